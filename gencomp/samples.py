"""Where sample reconstructions live on disk: written by the evaluation, read by the report.

``samples_dir/<dataset>/<image>/original.png`` and ``<slug(label)>.png`` for every grid cell.
"""

from __future__ import annotations

import re
from pathlib import Path

ORIGINAL_SAMPLE_NAME = "original"


def slugify(label: str) -> str:
    """File-name form of a label: lower case, runs of anything but [a-z0-9] become '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    return slug or "cell"


def safe_name(name: str) -> str:
    """``name`` itself when it is a plain file name, else its slug (ids like 'a/b' must not nest folders)."""
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and ".." not in name else slugify(name)


def sample_folder(samples_dir: str | Path, dataset: str, image: str) -> Path:
    """Where the sample reconstructions of one image live: ``samples_dir/<dataset>/<image>/``."""
    return Path(samples_dir) / safe_name(dataset) / safe_name(image)
