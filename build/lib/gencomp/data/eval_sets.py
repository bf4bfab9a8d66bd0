"""Evaluation image sets: the test split of our shards, or any folder of images (Kodak, a user's photos).

Both come out the same way: a list of (image_id, sha256, RGB image), in a fixed order. ``max_side`` downscales
larger images (the demo grid uses it to run in minutes); the sha256 is then that of the downscaled pixels, so a
cached result never mixes up a full-size image with its downscaled copy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from gencomp.data.images import DEFAULT_FORMATS, DEFAULT_MAX_PIXELS, ImageRejected, open_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".jxl"}

EvalImage = tuple[str, str, Image.Image]


def _downscale(img: Image.Image, max_side: int | None) -> Image.Image:
    if max_side is None or max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def pixels_sha256(img: Image.Image) -> str:
    """Identity of decoded pixels (size included), for images that have no file of their own."""
    h = hashlib.sha256(f"{img.width}x{img.height}:".encode())
    h.update(np.ascontiguousarray(np.asarray(img, dtype=np.uint8)).tobytes())
    return h.hexdigest()


def folder_images(folder: str | Path, *, recursive: bool = True, max_images: int | None = None,
                  max_side: int | None = None, formats=DEFAULT_FORMATS, max_pixels: int = DEFAULT_MAX_PIXELS,
                  rejected: list[dict[str, str]] | None = None) -> list[EvalImage]:
    """Images in ``folder`` (sorted by relative path; the id is that path without suffix). Files that are not
    usable images are skipped and, when ``rejected`` is given, appended to it as {path, reason, message}."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"image folder {folder} does not exist")
    pattern = "**/*" if recursive else "*"
    paths = sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    out: list[EvalImage] = []
    for path in paths:
        if max_images is not None and len(out) >= max_images:
            break
        data = path.read_bytes()
        try:
            img = open_image(data, formats=formats, max_pixels=max_pixels)
        except ImageRejected as exc:
            if rejected is not None:
                rejected.append({"path": str(path), "reason": exc.reason, "message": exc.message})
            continue
        image_id = path.relative_to(folder).with_suffix("").as_posix()
        if max_side is None:
            sha = hashlib.sha256(data).hexdigest()
        else:
            img = _downscale(img, max_side)
            sha = pixels_sha256(img)
        out.append((image_id, sha, img))
    return out


def shard_images(shards_dir: str | Path, split: str, *, max_images: int | None = None,
                 max_side: int | None = None) -> list[EvalImage]:
    """Images of one split of a shards directory, in the shards' fixed order."""
    from gencomp.data.loader import iter_split_images

    out: list[EvalImage] = []
    for sha, img in iter_split_images(Path(shards_dir), split):
        if max_images is not None and len(out) >= max_images:
            break
        if max_side is not None:
            img = _downscale(img, max_side)
            sha = pixels_sha256(img)
        out.append((sha[:12], sha, img))
    return out
