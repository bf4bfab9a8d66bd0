"""Size refusals in the image rules: zlib bombs in PNG metadata and JPEG XL sizes read before decoding."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from gencomp.data import images
from gencomp.data.images import TOO_LARGE, ImageRejected, jxl_size, open_image, probe


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize("kind, prefix", [(b"zTXt", b"Comment\x00\x00"), (b"iCCP", b"icc\x00\x00")])
def test_a_png_whose_metadata_inflates_to_200_mb_is_too_large(kind, prefix):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    png = buf.getvalue()
    bomb = png[:33] + _chunk(kind, prefix + zlib.compress(bytes(200 << 20), 9)) + png[33:]  # after IHDR
    for read in (probe, open_image):
        with pytest.raises(ImageRejected) as caught:
            read(bomb)
        assert caught.value.reason == TOO_LARGE


@pytest.mark.parametrize("size", [(40, 24), (1000, 3), (64, 64), (300, 200), (8, 256), (70001, 1)])
def test_jxl_size_reads_the_codestream_header(size):
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, format="JXL", quality=50)
    assert jxl_size(buf.getvalue()) == size
    assert jxl_size(b"\x89PNG\r\n\x1a\n") is None


def test_a_jxl_over_the_pixel_limit_is_refused_without_decoding(monkeypatch):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JXL", quality=50)

    def no_decoding(*args, **kwargs):
        raise AssertionError("Image.open decodes a JPEG XL file whole; the size must be checked first")

    monkeypatch.setattr(images.Image, "open", no_decoding)
    with pytest.raises(ImageRejected) as caught:
        open_image(buf.getvalue(), max_pixels=64 * 63)
    assert caught.value.reason == TOO_LARGE and "64x64" in str(caught.value)
