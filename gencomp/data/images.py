"""The one path by which gencomp turns bytes into pixels.

Every stage (scraper validation, hashing, sharding, training, evaluation) decodes through
:func:`open_image`, so a hash or a metric never depends on which caller decoded the file.

Normalisation rules (documented in README "Image rules"):
- formats: an allow-list of raster formats (``DEFAULT_FORMATS``); SVG, PDF, HTML and anything Pillow cannot
  identify are rejected with reason ``not_an_image`` or ``unsupported_format``;
- size: more than ``max_pixels`` pixels is rejected as ``too_large`` *before* decoding (decompression bombs;
  JPEG XL, whose Pillow plugin decodes the whole image when it opens it, has its size read from the
  codestream's own header first, see :func:`jxl_size`), and so is a file whose compressed metadata inflates
  past Pillow's limits (a zlib bomb in a PNG text or ICC chunk);
- truncated or otherwise undecodable data is rejected as ``truncated`` / ``corrupt``;
- EXIF orientation is applied, so width/height are those of the image as displayed;
- animated images (GIF, WebP, APNG) keep their first frame;
- mode: 16-bit greyscale is scaled to 8 bit, CMYK/YCbCr/LAB/greyscale become RGB, palette images are expanded,
  and transparency is composited onto white. The result is always 8-bit RGB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

try:  # registers JPEG XL with Pillow when installed
    import pillow_jxl  # noqa: F401
except ImportError:  # pragma: no cover - optional plugin
    pass

DEFAULT_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "JXL", "MPO"})
DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000; Pillow's own bomb limit is 89.5 Mpx

# Reason codes used in manifests and error messages.
NOT_AN_IMAGE = "not_an_image"
UNSUPPORTED_FORMAT = "unsupported_format"
TOO_LARGE = "too_large"
TOO_SMALL = "too_small"
TRUNCATED = "truncated"
CORRUPT = "corrupt"


class ImageRejected(ValueError):
    """An input that is not a usable image. ``reason`` is a stable code for manifests."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int  # after EXIF orientation
    height: int
    mode: str  # the file's own mode, before normalisation
    frames: int


_JXL_CODESTREAM = b"\xff\x0a"
_JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


class _Bits:
    """LSB-first bit reader (JPEG XL's bit order)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        value = 0
        for i in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ImageRejected(TRUNCATED, "JPEG XL header ends early")
            value |= ((self.data[byte] >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return value


def _jxl_codestream(data: bytes) -> bytes | None:
    if data.startswith(_JXL_CODESTREAM):
        return data
    if not data.startswith(_JXL_CONTAINER):
        return None
    pos = 0
    while pos + 8 <= len(data):  # ISO BMFF boxes: the codestream is in 'jxlc', or split over 'jxlp' boxes
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        head = 8
        if size == 1:
            size, head = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if size < head:
            raise ImageRejected(CORRUPT, "JPEG XL container box with an invalid size")
        if kind == b"jxlc":
            return data[pos + head : pos + size]
        if kind == b"jxlp":
            return data[pos + head + 4 : pos + size]
        pos += size
    raise ImageRejected(CORRUPT, "JPEG XL container without a codestream")


def jxl_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG XL file's SizeHeader (codestream or ISO BMFF container), without decoding;
    None if ``data`` is not JPEG XL."""
    stream = _jxl_codestream(bytes(data[:1 << 16]))
    if stream is None:
        return None
    bits = _Bits(stream[2:])

    def u32_size() -> int:
        return 1 + bits.u((9, 13, 18, 30)[bits.u(2)])

    if bits.u(1):  # small: multiples of 8 up to 256
        height = (bits.u(5) + 1) * 8
        ratio = bits.u(3)
        width = (bits.u(5) + 1) * 8 if ratio == 0 else None
    else:
        height = u32_size()
        ratio = bits.u(3)
        width = u32_size() if ratio == 0 else None
    if width is None:
        num, den = _JXL_RATIOS[ratio]
        width = height * num // den
    return width, height


def _as_stream(data: bytes | bytearray | memoryview | str | Path) -> io.BytesIO:
    if isinstance(data, (str, Path)):
        return io.BytesIO(Path(data).read_bytes())
    return io.BytesIO(bytes(data))


def _open_checked(stream: io.BytesIO, formats: frozenset[str] | set[str], max_pixels: int) -> Image.Image:
    head = stream.getvalue()[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype", b"<html")):
        raise ImageRejected(NOT_AN_IMAGE, "markup (HTML/SVG/XML), not a raster image")
    size = jxl_size(stream.getvalue())
    if size is not None:  # Pillow's JPEG XL plugin decodes the whole image in Image.open: check the size first
        if "JXL" not in formats:
            raise ImageRejected(UNSUPPORTED_FORMAT, "format JXL is not in the allow-list")
        if size[0] * size[1] > max_pixels:
            raise ImageRejected(TOO_LARGE, f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds the limit of "
                                           f"{max_pixels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(stream)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(TOO_LARGE, str(exc)) from exc
    except ValueError as exc:
        if _inflates_too_far(exc):
            raise ImageRejected(TOO_LARGE, str(exc)) from exc
        raise ImageRejected(NOT_AN_IMAGE, f"cannot identify image data ({type(exc).__name__})") from exc
    except Exception as exc:  # PIL.UnidentifiedImageError and friends
        raise ImageRejected(NOT_AN_IMAGE, f"cannot identify image data ({type(exc).__name__})") from exc
    if img.format not in formats:
        raise ImageRejected(UNSUPPORTED_FORMAT, f"format {img.format} is not in the allow-list")
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageRejected(CORRUPT, f"invalid size {w}x{h}")
    if w * h > max_pixels:
        raise ImageRejected(TOO_LARGE, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
    return img


def _inflates_too_far(exc: BaseException) -> bool:
    """Pillow's refusal of compressed metadata (PNG text, ICC) that inflates past its chunk limits."""
    return "decompressed data too large" in str(exc).lower()


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:
        orientation = 1
    w, h = img.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def probe(data: bytes | Path | str, *, formats=DEFAULT_FORMATS, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Identify an image from its header only (cheap: no pixel decode)."""
    img = _open_checked(_as_stream(data), formats, max_pixels)
    w, h = _oriented_size(img)
    return ImageInfo(img.format, w, h, img.mode, getattr(img, "n_frames", 1))


def to_rgb(img: Image.Image) -> Image.Image:
    """Normalise a decoded Pillow image to 8-bit RGB by the rules in the module docstring."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.int64)
        # 16-bit data: keep the top 8 bits; 32-bit 'I' images may hold 16-bit values too.
        peak = 65535 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
        arr = np.clip(arr * 255.0 / peak + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def open_image(
    data: bytes | bytearray | memoryview | Path | str,
    *,
    formats=DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: tuple[int, int] = (1, 1),
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode, validate and normalise an image to 8-bit RGB (EXIF orientation applied).

    ``draft_size`` lets JPEG decode at a reduced scale (DCT scaling) of at least that size. Callers that
    need identical pixels (hashing) must all pass the same value.
    Raises :class:`ImageRejected` with a reason code for anything unusable.
    """
    img = _open_checked(_as_stream(data), formats, max_pixels)
    if draft_size is not None and img.format == "JPEG":
        img.draft("RGB", draft_size)
    try:
        img.seek(0)
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as exc:  # RuntimeError: the AVIF plugin
        msg = str(exc)
        if _inflates_too_far(exc):
            raise ImageRejected(TOO_LARGE, msg) from exc
        reason = TRUNCATED if ("truncated" in msg.lower() or isinstance(exc, EOFError)) else CORRUPT
        raise ImageRejected(reason, msg or type(exc).__name__) from exc
    except Image.DecompressionBombError as exc:  # pragma: no cover - caught earlier by max_pixels
        raise ImageRejected(TOO_LARGE, str(exc)) from exc
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose the image: keep it unrotated
        pass
    img = to_rgb(img)
    if img.width < min_size[0] or img.height < min_size[1]:
        raise ImageRejected(TOO_SMALL, f"{img.width}x{img.height} is under the minimum {min_size[0]}x{min_size[1]}")
    return img


def encode_png(img: Image.Image) -> bytes:
    """Lossless PNG bytes of an image (what shards and decoded outputs store)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()
