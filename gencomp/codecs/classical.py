"""Classical codecs through Pillow: JPEG, WebP, AVIF and JPEG XL (pillow-jxl-plugin).

The payload is the codec's own complete file (what ``Image.save`` writes) inside the ``.gcz`` container, so
its size includes the format's own headers, as a JPEG on disk would. Images are re-created from raw pixels
before saving so that no metadata (EXIF, ICC profile, XMP) from the source sneaks into the payload, and
pillow-jxl-plugin never takes its lossless JPEG-transcoding path.

Settings: ``quality`` (each library's own scale; JPEG accepts 1, the poster's "JPEG (1%)"), or
``target_bpp``: when set, quality is chosen by bisection as the highest quality whose complete ``.gcz``
file (container bytes counted) is at or under the target, and the ``quality`` setting is ignored. A target
below the rate of the lowest quality raises :class:`TargetRateUnreachable`. The chosen quality is written
into the header (``q``), where ``gencomp info`` shows it.

Limits: encoding refuses an image wider or taller than the format allows (``max_side``: JPEG 65500, WebP
16383, AVIF 65536) as ``too_large`` instead of the library's own error. Decoding refuses, before decoding, a
payload longer than ``PAYLOAD_BYTES_PER_PIXEL`` bytes per pixel of the header's size (plus 1 MiB of format
headers; the worst real case, noise at the highest quality, is under 5), and a payload whose own header (read
without decoding) gives another size than the container's.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

from PIL import Image

from gencomp.codecs.base import Codec, Param, register
from gencomp.codecs.container import Container, CorruptPayload, Header, LimitExceeded, pack
from gencomp.data.images import TOO_LARGE, ImageRejected, jxl_size, open_image, probe

PAYLOAD_BYTES_PER_PIXEL = 16
PAYLOAD_BYTES_EXTRA = 1 << 20

try:  # registers the JXL format with Pillow
    import pillow_jxl  # noqa: F401

    HAVE_JXL = True
except ImportError:  # pragma: no cover - pillow-jxl-plugin is a declared dependency
    HAVE_JXL = False


class TargetRateUnreachable(ValueError):
    """Even the lowest quality gives a file larger than ``target_bpp``."""

    def __init__(self, codec: str, target_bpp: float, min_bpp: float):
        super().__init__(
            f"codec {codec!r} cannot reach {target_bpp:g} bpp on this image: its lowest quality gives {min_bpp:.4f} bpp"
        )
        self.target_bpp = target_bpp
        self.min_bpp = min_bpp


def _target_param() -> Param:
    return Param(
        "target_bpp", "float", None,
        "bits per pixel (whole .gcz file) to reach at or under, by bisection on quality; overrides quality",
    )


class PillowCodec(Codec):
    """A Pillow image format as a codec. Subclasses set the format and the quality scale."""

    family = "classical"
    pil_format: ClassVar[str]
    quality_limits: ClassVar[tuple[int, int]]  # what the quality setting accepts
    bisection_range: ClassVar[tuple[int, int] | None] = None  # what target_bpp searches; None: quality_limits
    extra_save_args: ClassVar[tuple[str, ...]] = ()  # settings passed through to Image.save
    max_side: ClassVar[int | None] = None  # the format's largest width or height

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        q = self.settings["quality"]
        lo, hi = self.quality_limits
        if not lo <= q <= hi:
            raise ValueError(f"codec {self.name!r}: quality must be in {lo}..{hi}, got {q}")
        target = self.settings.get("target_bpp")
        if target is not None and not target > 0:
            raise ValueError(f"codec {self.name!r}: target_bpp must be positive, got {target}")
        if self.pil_format == "JXL" and not HAVE_JXL:  # pragma: no cover
            raise RuntimeError("codec 'jxl' needs pillow-jxl-plugin (pip install pillow-jxl-plugin)")

    def save_kwargs(self, quality: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"quality": quality}
        kwargs.update({name: self.settings[name] for name in self.extra_save_args})
        return kwargs

    def _encode_quality(self, pixels: Image.Image, quality: int) -> bytes:
        buf = io.BytesIO()
        pixels.save(buf, format=self.pil_format, **self.save_kwargs(quality))
        return pack(
            codec_id=self.codec_id, width=pixels.width, height=pixels.height, payload=buf.getvalue(),
            params={"q": quality},
        )

    def encode(self, image: Image.Image) -> bytes:
        image = self.check_rgb(image)
        if self.max_side is not None and max(image.size) > self.max_side:
            raise ImageRejected(TOO_LARGE, f"{image.width}x{image.height}: {self.pil_format} stores at most "
                                           f"{self.max_side} pixels per side")
        # A bare copy of the pixels: no EXIF / ICC / XMP, and no "JPEG" format tag for plugins to act on.
        pixels = Image.frombytes("RGB", image.size, image.tobytes())
        target = self.settings.get("target_bpp")
        if target is None:
            return self._encode_quality(pixels, self.settings["quality"])
        return self._encode_to_target(pixels, target)

    def _encode_to_target(self, pixels: Image.Image, target_bpp: float) -> bytes:
        n_pixels = pixels.width * pixels.height
        cache: dict[int, bytes] = {}

        def at(q: int) -> bytes:
            if q not in cache:
                cache[q] = self._encode_quality(pixels, q)
            return cache[q]

        def fits(q: int) -> bool:
            return len(at(q)) * 8 / n_pixels <= target_bpp

        lo, hi = self.bisection_range or self.quality_limits
        if not fits(lo):
            raise TargetRateUnreachable(self.name, target_bpp, len(at(lo)) * 8 / n_pixels)
        if fits(hi):
            return at(hi)
        while hi - lo > 1:  # invariant: fits(lo) and not fits(hi)
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        # Size is not strictly monotone in quality; of all files tried, return the largest that fits.
        best = max((data for data in cache.values() if len(data) * 8 / n_pixels <= target_bpp), key=len)
        return best

    def check_header(self, header: Header) -> None:
        super().check_header(header)
        limit = header.pixels * PAYLOAD_BYTES_PER_PIXEL + PAYLOAD_BYTES_EXTRA
        if header.payload_size > limit:
            raise LimitExceeded(f"{header.payload_size}-byte payload for a {header.width}x{header.height} image "
                                f"is over {self.name}'s limit of {limit} bytes")

    def decode(self, data: bytes) -> Image.Image:
        return self.decode_container(self.open_container(data))

    def decode_container(self, container: Container) -> Image.Image:
        try:  # the payload's own header first: a size that differs is refused before any decoding
            # (Pillow's JPEG XL plugin decodes on open, so its size comes from the codestream header instead)
            size = jxl_size(container.payload) if self.pil_format == "JXL" else None
            if size is None:
                info = probe(container.payload, formats={self.pil_format}, max_pixels=self.max_pixels)
                size = (info.width, info.height)
        except ImageRejected as exc:
            raise CorruptPayload(f"{self.name} payload does not decode: {exc}") from exc
        if size != (container.width, container.height):
            raise CorruptPayload(
                f"{self.name} payload is {size[0]}x{size[1]}, header says {container.width}x{container.height}"
            )
        try:
            image = open_image(container.payload, formats={self.pil_format}, max_pixels=self.max_pixels)
        except ImageRejected as exc:
            raise CorruptPayload(f"{self.name} payload does not decode: {exc}") from exc
        if image.size != (container.width, container.height):
            raise CorruptPayload(
                f"{self.name} payload is {image.width}x{image.height}, header says {container.width}x{container.height}"
            )
        return image


@register
class JPEGCodec(PillowCodec):
    name = "jpeg"
    codec_id = 1
    bitstream = "jpeg"
    pil_format = "JPEG"
    max_side = 65500
    quality_limits = (1, 100)
    bisection_range = (1, 95)  # Pillow: above 95 the file grows with no visible gain
    params = (
        Param("quality", "int", 75, "libjpeg quality 1..100 (1 is the poster's 'JPEG (1%)')"),
        _target_param(),
    )


@register
class WebPCodec(PillowCodec):
    name = "webp"
    codec_id = 2
    bitstream = "webp"
    pil_format = "WEBP"
    max_side = 16383
    quality_limits = (0, 100)
    extra_save_args = ("method",)
    params = (
        Param("quality", "int", 80, "libwebp lossy quality 0..100"),
        _target_param(),
        Param("method", "int", 4, "libwebp effort 0 (fast) .. 6 (small)", tuple(range(7))),
    )


@register
class AVIFCodec(PillowCodec):
    name = "avif"
    codec_id = 3
    bitstream = "avif"
    pil_format = "AVIF"
    max_side = 65536
    quality_limits = (0, 100)
    extra_save_args = ("speed",)
    params = (
        Param("quality", "int", 75, "libavif quality 0..100"),
        _target_param(),
        Param("speed", "int", 6, "libavif speed 0 (small) .. 10 (fast)", tuple(range(11))),
    )


@register
class JXLCodec(PillowCodec):
    name = "jxl"
    codec_id = 4
    bitstream = "jxl"
    pil_format = "JXL"
    quality_limits = (0, 100)
    extra_save_args = ("effort",)
    params = (
        Param("quality", "int", 90, "libjxl quality 0..100 (100 is lossless)"),
        _target_param(),
        Param("effort", "int", 7, "libjxl effort 1 (fast) .. 9 (small)", tuple(range(1, 10))),
    )

    def save_kwargs(self, quality: int) -> dict[str, Any]:
        return {**super().save_kwargs(quality), "lossless_jpeg": False}
