"""The .gcz container: layout, typed errors, and fuzzing of truncated / bit-flipped files of several codecs."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gencomp.codecs import decode_file, get_codec, inspect
from gencomp.codecs.container import (
    MAGIC,
    BadMagic,
    ContainerError,
    CorruptPayload,
    CrcMismatch,
    FingerprintMismatch,
    MalformedHeader,
    TrailingData,
    Truncated,
    UnknownCodec,
    UnsupportedVersion,
    pack,
    unpack,
)
from gencomp.models import VAEGAN, GaussianChannelPrior, Generator, InversionEncoder, save_gan, save_vaegan


def _image(width: int = 40, height: int = 24) -> Image.Image:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8), "RGB")


def _reseal(body_without_crc: bytes) -> bytes:
    """A file with a correct CRC for a hand-edited body (to reach checks behind the CRC)."""
    return body_without_crc + struct.pack("<I", zlib.crc32(body_without_crc))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    gan = root / "gan.pt"
    save_gan(gan, generator=Generator(latent_dim=8, tile=8, width=8), encoder=InversionEncoder(8, 8, 8))
    other_gan = root / "gan2.pt"
    save_gan(other_gan, generator=Generator(latent_dim=8, tile=8, width=8), encoder=InversionEncoder(8, 8, 8))
    vae = root / "vaegan.pt"
    save_vaegan(vae, model=VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=4),
                prior=GaussianChannelPrior(4), quant_step=0.5, prior_fitted=False)
    return {"gan": gan, "gan2": other_gan, "vaegan": vae}


@pytest.fixture(scope="module")
def sample_files(models):
    """Small valid files of several codecs (all < 11 kB, where CRC-32 detects every 1..3-bit error)."""
    image = _image()
    files = {
        "jpeg": (get_codec("jpeg", quality=50).encode(image), None),
        "webp": (get_codec("webp", quality=50).encode(image), None),
        "gan-inversion": (get_codec("gan-inversion", model=models["gan"], steps=2, bits=6,
                                    entropy="gaussian").encode(image), models["gan"]),
        "vaegan": (get_codec("vaegan", model=models["vaegan"]).encode(image), models["vaegan"]),
    }
    for data, _ in files.values():
        assert len(data) < 11_000
    return files


def test_round_trip_fields_and_params():
    params = {"q": 7, "neg": -123456789, "f": 0.5, "s": "entropy", "raw": b"\x00\xff"}
    data = pack(codec_id=300, width=1234, height=5, payload=b"abc" * 50, fingerprint=b"12345678", params=params)
    c = unpack(data)
    assert (c.codec_id, c.width, c.height, c.payload, c.fingerprint) == (300, 1234, 5, b"abc" * 50, b"12345678")
    assert c.params == params
    assert c.total_size == len(data) and c.overhead == len(data) - 150
    assert data.startswith(MAGIC)


def test_jpeg_header_is_small():
    data = pack(codec_id=1, width=768, height=512, payload=bytes(5000), params={"q": 75})
    # magic 4, version 1, id 1, fingerprint 8, w 2, h 2, params len 1 + params 6 (count, key len, "q", type,
    # zigzag(75) = 150 as a 2-byte varint), payload len 2, crc 4
    assert len(data) - 5000 == 31


def test_pack_refuses_bad_input():
    with pytest.raises(ValueError, match="float32"):
        pack(codec_id=1, width=1, height=1, payload=b"", params={"x": 0.1})
    with pytest.raises(ValueError, match="positive"):
        pack(codec_id=1, width=0, height=1, payload=b"")
    with pytest.raises(ValueError, match="fingerprint"):
        pack(codec_id=1, width=1, height=1, payload=b"", fingerprint=b"123")


def test_each_error_type():
    good = pack(codec_id=1, width=4, height=4, payload=b"payload", params={"q": 1})
    with pytest.raises(BadMagic, match="not a .gcz"):
        unpack(b"\x89PNG\r\n\x1a\n" + good[8:])
    with pytest.raises(Truncated):
        unpack(good[:2])
    with pytest.raises(Truncated, match="truncated"):
        unpack(good[:-1])
    with pytest.raises(TrailingData):
        unpack(good + b"\x00")
    flipped = bytearray(good)
    flipped[-6] ^= 0x01
    with pytest.raises(CrcMismatch, match="CRC32"):
        unpack(bytes(flipped))
    with pytest.raises(UnsupportedVersion, match="version 4 is not supported"):
        unpack(_reseal(MAGIC + b"\x04" + good[5:-4]))
    zero_width = bytearray(good[:-4])
    zero_width[14] = 0  # the width varint (after magic 4, version 1, id 1, fingerprint 8)
    with pytest.raises(MalformedHeader, match="size"):
        unpack(_reseal(bytes(zero_width)))
    with pytest.raises(UnknownCodec, match="unknown"):
        decode_file(pack(codec_id=999, width=4, height=4, payload=b""))
    for cls in (BadMagic, Truncated, TrailingData, CrcMismatch, UnsupportedVersion, MalformedHeader, UnknownCodec):
        assert issubclass(cls, ContainerError) and issubclass(cls, ValueError)


def test_codec_refuses_another_codecs_bitstream():
    data = get_codec("webp").encode(_image())
    with pytest.raises(CorruptPayload, match="webp"):
        get_codec("jpeg").decode(data)


def test_fingerprint_mismatch(models):
    data = get_codec("gan-inversion", model=models["gan"], steps=0).encode(_image(16, 16))
    with pytest.raises(FingerprintMismatch, match="encoded with model"):
        decode_file(data, model=models["gan2"])


def test_inspect_reports_bpp(sample_files):
    data, _ = sample_files["vaegan"]
    fields = inspect(data)
    assert fields["codec"] == "vaegan" and (fields["width"], fields["height"]) == (40, 24)
    assert fields["bpp"] == pytest.approx(len(data) * 8 / (40 * 24))
    assert fields["params"] == {"c": 4, "s": 0}
    assert fields["fingerprint"] != "0" * 16


_CODECS = ["jpeg", "webp", "gan-inversion", "vaegan"]


@settings(max_examples=120, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(_CODECS), cut=st.floats(0.0, 1.0, exclude_max=True))
def test_fuzz_truncated_files_raise_container_errors(sample_files, name, cut):
    data, model = sample_files[name]
    with pytest.raises(ContainerError):
        decode_file(data[: int(len(data) * cut)], model=model)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(_CODECS), flips=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=3,
                                                     unique=True))
def test_fuzz_bit_flipped_files_raise_container_errors(sample_files, name, flips):
    data, model = sample_files[name]
    corrupted = bytearray(data)
    positions = {int(f * len(data) * 8) for f in flips}
    for bit in positions:
        corrupted[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ContainerError):
        decode_file(bytes(corrupted), model=model)


def test_a_file_says_the_oldest_version_that_reads_it_and_all_are_read():
    v1 = pack(codec_id=1, width=4, height=4, payload=b"x")
    v2 = pack(codec_id=1, width=4, height=4, payload=b"x", version=2)
    v3 = pack(codec_id=1, width=4, height=4, payload=b"x", version=3)
    assert v1[len(MAGIC)] == 1 and v2[len(MAGIC)] == 2 and v3[len(MAGIC)] == 3  # the default: version 1
    assert unpack(v1).version == 1 and unpack(v2).version == 2 and unpack(v3).version == 3
    assert unpack(v1).payload == unpack(v2).payload == unpack(v3).payload == b"x"
    with pytest.raises(ValueError, match="format version 4"):
        pack(codec_id=1, width=4, height=4, payload=b"x", version=4)
