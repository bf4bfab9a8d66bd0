"""Hostile files: each is refused with its documented error, within memory and CPU limits set by the harness.

The files are built here; a child process sets RLIMIT_AS (its address space now plus ``_BUDGET_MB``) and
RLIMIT_CPU, decodes each of them and reports the exception's class. A decoder that allocated what a header
asks before checking it would hit the address-space limit (MemoryError, reported as such), and one that spent
minutes would be killed by SIGXCPU; either fails the test. A valid file decodes in the same child, so the
limits are not simply too tight for anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gencomp.codecs import decode_file, get_codec
from gencomp.codecs.container import LimitExceeded, pack, read_container, unpack
from gencomp.codecs.vaegan import VAEGANCodec
from gencomp.models import VAEGAN, GaussianChannelPrior, Generator, InversionEncoder, ModelFileError, load_model
from gencomp.models import save_gan, save_vaegan
from gencomp.models.hyperprior import Hyperprior
from tests.gcz_files import repack

_BUDGET_MB = 160  # under what decoding a 7900x7900 JPEG or holding a 200 MB payload would take
_CPU_S = 60

_CHILD = textwrap.dedent(
    """
    import json, os, resource, sys
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)
    from gencomp.codecs import decode_file
    from gencomp.models import load_model

    def vm_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

    cases = json.loads(sys.argv[1])
    budget = int(sys.argv[2]) << 20
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    used = int(cpu.ru_utime + cpu.ru_stime)
    resource.setrlimit(resource.RLIMIT_CPU, (used + int(sys.argv[3]), resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + budget, resource.RLIM_INFINITY))
    out = {}
    for name, case in cases.items():
        try:
            if case.get("kind") == "model":
                load_model(case["path"])
            else:
                image = decode_file(case["path"], model=case.get("model"))
                out[name] = f"ok {image.width}x{image.height}"
                continue
            out[name] = "ok"
        except MemoryError:
            out[name] = "MemoryError"
        except Exception as exc:
            out[name] = type(exc).__name__
    print(json.dumps(out))
    """
)


def _image(width: int = 40, height: int = 24) -> Image.Image:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8), "RGB")



def _jxl_codestream(width: int, height: int) -> bytes:
    """A JPEG XL codestream whose SizeHeader declares ``width`` x ``height``, followed by junk."""
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> i) & 1 for i in range(n))

    put(0, 1)  # not "small"
    put(3, 2)  # 30-bit height
    put(height - 1, 30)
    put(0, 3)  # no ratio: explicit width
    put(3, 2)
    put(width - 1, 30)
    raw = bytes(sum(b << i for i, b in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8))
    return b"\xff\x0a" + raw + bytes(64)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    gan, vae = root / "gan.pt", root / "vaegan.pt"
    save_gan(gan, generator=Generator(latent_dim=8, tile=8, width=8), encoder=InversionEncoder(8, 8, 8))
    save_vaegan(vae, model=VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=4),
                prior=GaussianChannelPrior(4), quant_step=0.5, prior_fitted=False)
    vae_hp = root / "vaegan-hp.pt"
    save_vaegan(vae_hp, model=VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=4,
                                     entropy_model="hyperprior"),
                prior=None, quant_step=1.0, prior_fitted=False, hyperprior=Hyperprior(4, 8))
    return {"gan": gan, "vaegan": vae, "vaegan_hp": vae_hp}


@pytest.fixture(scope="module")
def hostile(models, tmp_path_factory):
    """name -> (case for the child, the class it must report)."""
    root = tmp_path_factory.mktemp("hostile")
    image = _image()
    gan_entropy = get_codec("gan-inversion", model=models["gan"], steps=1, bits=6, entropy="gaussian").encode(image)
    gan_1bit = get_codec("gan-inversion", model=models["gan"], steps=1, bits=1).encode(image)
    vae = get_codec("vaegan", model=models["vaegan"]).encode(image)
    vae_raw = get_codec("vaegan", model=models["vaegan"], storage="raw").encode(image)
    vae_payload = unpack(vae).payload
    vae_hp = get_codec("vaegan", model=models["vaegan_hp"], refine_steps=0).encode(image)
    files = {
        # the 195 KB gan file declaring 8000x8000: over the learned limit
        "gan_8000x8000": (repack(gan_entropy, width=8000, height=8000), models["gan"], "LimitExceeded"),
        # under the pixel limit, but the payload cannot hold that many latents
        "gan_4000x4000": (repack(gan_entropy, width=4000, height=4000), models["gan"], "CorruptPayload"),
        "gan_1bit_4000x4000": (repack(gan_1bit, width=4000, height=4000), models["gan"], "CorruptPayload"),
        "vaegan_8000x8000": (repack(vae, width=8000, height=8000), models["vaegan"], "LimitExceeded"),
        "vaegan_4000x4000": (repack(vae, width=4000, height=4000), models["vaegan"], "CorruptPayload"),
        "vaegan_raw_4000x4000": (repack(vae_raw, width=4000, height=4000), models["vaegan"], "CorruptPayload"),
        # a few more latents than the payload holds (within what its length could carry): the ANS decoder
        # would read zeros past the end of the stream
        "vaegan_40x28_same_payload": (repack(vae, height=28), models["vaegan"], "CorruptPayload"),
        "gan_40x32_same_payload": (repack(gan_entropy, height=32), models["gan"], "CorruptPayload"),
        "vaegan_word_appended": (repack(vae, payload=vae_payload + b"\x01\x00\x00\x00"), models["vaegan"],
                                 "CorruptPayload"),
        "jxl_declares_30000x30000": (pack(codec_id=4, width=64, height=48, payload=_jxl_codestream(30000, 30000),
                                          params={"q": 90}), None, "CorruptPayload"),
        "valid_vaegan": (vae, models["vaegan"], "ok 40x24"),
        # the hyperprior's z section cannot hold z for that size: refused from the header, before h_s runs
        "vaegan_hp_4000x4000": (repack(vae_hp, width=4000, height=4000), models["vaegan_hp"], "CorruptPayload"),
        "vaegan_hp_word_appended": (repack(vae_hp, payload=unpack(vae_hp).payload + b"\x01\x00\x00\x00"),
                                    models["vaegan_hp"], "CorruptPayload"),
        "valid_vaegan_hp": (vae_hp, models["vaegan_hp"], "ok 40x24"),
    }
    big = Image.new("RGB", (7900, 7900), (90, 120, 200))
    for name, size in (("jpeg_7900_under_64x48", (7900, 7900)), ("jpeg_2000_under_64x48", (2000, 2000))):
        import io

        buf = io.BytesIO()
        big.crop((0, 0, *size)).save(buf, format="JPEG", quality=75)
        expected = "CorruptPayload" if len(buf.getvalue()) < (1 << 20) else "LimitExceeded"
        files[name] = (pack(codec_id=1, width=64, height=48, payload=buf.getvalue(), params={"q": 75}), None, expected)
    del big
    cases, expected = {}, {}
    for name, (data, model, want) in files.items():
        path = root / f"{name}.gcz"
        path.write_bytes(data)
        cases[name] = {"path": str(path), **({"model": str(model)} if model else {})}
        expected[name] = want
    # a 200 MB file whose header says 64x48 JPEG: refused from its header, never read whole
    path = root / "huge_payload.gcz"
    with open(path, "wb") as f:
        payload_len = 200 << 20
        head = pack(codec_id=1, width=64, height=48, payload=b"", params={"q": 75})[:-5]  # up to payload length
        head += bytes([(payload_len >> s & 0x7F) | (0x80 if payload_len >> (s + 7) else 0) for s in range(0, 28, 7)])
        crc = zlib.crc32(head)
        f.write(head)
        chunk = bytes(1 << 20)
        for _ in range(200):
            f.write(chunk)
            crc = zlib.crc32(chunk, crc)
        f.write(crc.to_bytes(4, "little"))
    cases["huge_payload"], expected["huge_payload"] = {"path": str(path)}, "LimitExceeded"
    # a weights-only model file whose config says width 200000
    state = torch.load(models["gan"], weights_only=True)
    state["config"]["generator"]["width"] = 200_000
    model_path = root / "wide.pt"
    torch.save(state, model_path)
    cases["model_width_200000"], expected["model_width_200000"] = {"kind": "model", "path": str(model_path)}, \
        "ModelFileError"
    return cases, expected


def test_hostile_files_are_refused_within_memory_and_cpu_limits(hostile):
    cases, expected = hostile
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cases), str(_BUDGET_MB), str(_CPU_S)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"child died ({proc.returncode}): {proc.stderr[-2000:]}"
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected


def test_huge_payload_is_refused_before_it_is_read(hostile, monkeypatch):
    cases, _ = hostile
    reads = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def read(self, n=-1):
            data = self.f.read(n)
            reads.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr("gencomp.codecs.container.open", lambda *a, **k: Spy(real_open(*a, **k)), raising=False)
    with pytest.raises(LimitExceeded):
        decode_file(Path(cases["huge_payload"]["path"]))
    assert max(reads) <= 1 << 20  # the CRC pass reads 1 MiB chunks; the payload itself is never read


def test_streamed_read_matches_in_memory_unpack(tmp_path):
    data = get_codec("webp", quality=40).encode(_image())
    (tmp_path / "a.gcz").write_bytes(data)
    assert read_container(tmp_path / "a.gcz") == unpack(data)
    assert np.array_equal(np.asarray(decode_file(tmp_path / "a.gcz")), np.asarray(decode_file(data)))


def test_pixel_limit_is_configurable_and_applies_to_encoding(models):
    data = get_codec("vaegan", model=models["vaegan"]).encode(_image())
    with pytest.raises(LimitExceeded, match="limit of 500"):
        decode_file(data, model=models["vaegan"], max_pixels=500)
    assert decode_file(data, model=models["vaegan"], max_pixels=960).size == (40, 24)
    codec = get_codec("vaegan", model=models["vaegan"])
    codec.max_pixels = 500
    with pytest.raises(ValueError, match="too_large"):
        codec.encode(_image())


def test_jpeg_refuses_a_side_over_its_format_limit():
    from gencomp.data.images import ImageRejected

    with pytest.raises(ImageRejected, match="too_large.*65500"):
        get_codec("jpeg").encode(Image.new("RGB", (70000, 1)))


def test_tiled_vaegan_decode_matches_the_whole_image_decode(models, monkeypatch):
    import gencomp.codecs.vaegan as vaegan_module

    codec = get_codec("vaegan", model=models["vaegan"])
    image = _image(120, 88)  # a 30x22 latent at downsample 4
    data = codec.encode(image)
    whole = np.asarray(codec.decode(data), dtype=np.int16)
    monkeypatch.setattr(vaegan_module, "_DECODE_CORE", 7)  # 5x4 tiles, margins crossing every seam
    tiled = np.asarray(codec.decode(data), dtype=np.int16)
    assert np.abs(whole - tiled).max() <= 1


def test_model_config_bounds_and_shapes(models, tmp_path):
    state = torch.load(models["vaegan"], weights_only=True)
    for change, message in (
        ({"width": 200_000}, "width must be an integer in"),
        ({"downsample": 12}, "power of two"),
        ({"channel_set": [4, 9]}, "channel_set"),
        ({"width": 16}, "does not match its config"),  # in bounds, but not the weights the file holds
    ):
        bad = {**state, "config": {**state["config"], "model": {**state["config"]["model"], **change}}}
        path = tmp_path / "bad.pt"
        torch.save(bad, path)
        with pytest.raises(ModelFileError, match=message):
            load_model(path)
    assert isinstance(load_model(models["vaegan"]).model, VAEGAN)
    assert VAEGANCodec(model=models["vaegan"]).channels == 4
