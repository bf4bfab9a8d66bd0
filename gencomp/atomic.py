"""Atomic file writes: a temporary file in the destination's folder, fsync, then os.replace.

Readers, and a rerun after a crash, see either the old file or the whole new one, never half of it. Every module
that writes an output goes through here.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def _create_temp(path: Path) -> Path:
    """A new empty file beside ``path``, created with mode 0666 so that the process's umask (applied by the kernel
    at creation, whatever it is then) gives outputs their usual permissions; writers reopen it in place."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_with(path: str | Path, writer: Callable[[str], None], *, durable: bool = True) -> Path:
    """Call ``writer(tmp_path)`` to produce the file, then move it into place at ``path``.

    ``durable`` fsyncs before the rename, so the file also survives a power cut; without it the write is still
    atomic for every reader and for a crash of the process (what bulk writers such as the scraper's image store
    choose, where an fsync per file would cost most of the throughput)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        writer(str(tmp))
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_with(path, lambda tmp: Path(tmp).write_bytes(data), durable=durable)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_parquet_atomic(table, path: str | Path, **write_options) -> Path:
    """Write a pyarrow Table to ``path`` atomically."""
    import pyarrow.parquet as pq

    return write_with(path, lambda tmp: pq.write_table(table, tmp, **write_options))
