"""Validate downloaded image bodies and store the good ones, in a worker-process pool.

Decoding is CPU work; doing it on the Twisted reactor thread would stall every download. The crawl hands each
body to :class:`ValidationPool`, whose worker processes run :func:`validate_and_store`: identify and check the
image through :mod:`gencomp.data.images` (the one decode path), hash it, and write the ORIGINAL bytes
content-addressed at ``<out>/images/<sha256[:2]>/<sha256>.<ext>`` atomically (temp name in the same folder,
then ``os.replace``), so a crash never leaves a half-written image and two workers storing the same content
cannot corrupt each other.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from gencomp.atomic import write_bytes_atomic
from gencomp.data.images import DEFAULT_FORMATS, DEFAULT_MAX_PIXELS, TOO_SMALL, ImageRejected, open_image, probe

# File extension per detected format (the URL's extension is not trusted: servers lie).
FORMAT_EXTENSIONS: dict[str, str] = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tif",
    "AVIF": "avif",
    "JXL": "jxl",
}

# JPEGs are decoded at DCT scale 1/8 at most down to this size: the entropy-coded data is still parsed in
# full (so truncation and corruption are caught), at a fraction of the cost of a full-size decode.
_VALIDATION_DRAFT_SIZE = (256, 256)

OK = "ok"


@dataclass(frozen=True)
class ValidationResult:
    status: str  # "ok" or an ImageRejected reason code
    error: str  # "" when ok
    sha256: str  # of the original bytes, also for rejected bodies
    path: str  # relative to out_dir, "" when not stored
    width: int  # as displayed (EXIF orientation applied); 0 when unknown
    height: int
    format: str  # Pillow format name, "" when unknown
    frames: int  # 0 when unknown
    bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


def image_relpath(sha256: str, image_format: str) -> str:
    """Where content with this hash and format lives, relative to the crawl's out dir."""
    return f"images/{sha256[:2]}/{sha256}.{FORMAT_EXTENSIONS.get(image_format, image_format.lower())}"


def write_atomic(path: Path, data: bytes) -> None:
    """Store ``data`` at ``path`` atomically (temp file + rename; no fsync per image: see gencomp.atomic)."""
    write_bytes_atomic(path, data, durable=False)


def validate_and_store(
    body: bytes,
    *,
    out_dir: str | Path,
    formats: frozenset[str] | set[str] = DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_width: int = 1,
    min_height: int = 1,
) -> ValidationResult:
    """Check one downloaded body and, if it is a usable image, store its original bytes.

    Checks, in order: identifiable raster image in ``formats`` (header only), at most ``max_pixels`` (before
    any decode, so decompression bombs cost nothing), at least ``min_width`` x ``min_height`` as displayed,
    then a decode through :func:`gencomp.data.images.open_image` to catch truncated or corrupt data.
    Never raises for bad input: the reason goes into the result.
    """
    data = bytes(body)
    sha = hashlib.sha256(data).hexdigest()
    size = len(data)
    formats = frozenset(formats)
    try:
        info = probe(data, formats=formats, max_pixels=max_pixels)
    except ImageRejected as exc:
        return ValidationResult(exc.reason, exc.message, sha, "", 0, 0, "", 0, size)
    width, height = info.width, info.height
    try:
        if width < min_width or height < min_height:
            raise ImageRejected(TOO_SMALL, f"{width}x{height} is under the minimum {min_width}x{min_height}")
        # min_size is checked above on the full size: a draft decode is smaller than the image.
        open_image(data, formats=formats, max_pixels=max_pixels, draft_size=_VALIDATION_DRAFT_SIZE)
    except ImageRejected as exc:
        return ValidationResult(exc.reason, exc.message, sha, "", width, height, info.format, info.frames, size)
    relpath = image_relpath(sha, info.format)
    target = Path(out_dir) / relpath
    if not target.exists():  # content-addressed: an existing file already holds exactly these bytes
        write_atomic(target, data)
    return ValidationResult(OK, "", sha, relpath, width, height, info.format, info.frames, size)


class ValidationPool:
    """A process pool running :func:`validate_and_store` with fixed settings.

    Workers are started with the ``spawn`` method: the crawl process runs Twisted threads, and forking a
    threaded process can deadlock the child.
    """

    def __init__(
        self,
        *,
        workers: int,
        out_dir: str | Path,
        formats: frozenset[str] | set[str] = DEFAULT_FORMATS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_width: int = 1,
        min_height: int = 1,
    ):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        unknown = set(formats) - set(DEFAULT_FORMATS)
        if unknown:
            raise ValueError(f"unknown image formats {sorted(unknown)}; choose from {sorted(DEFAULT_FORMATS)}")
        self._settings = dict(
            out_dir=str(out_dir),
            formats=frozenset(formats),
            max_pixels=int(max_pixels),
            min_width=int(min_width),
            min_height=int(min_height),
        )
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, body: bytes) -> Future[ValidationResult]:
        return self._executor.submit(validate_and_store, body, **self._settings)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)

    def __enter__(self) -> ValidationPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
