"""The default VAE-GAN weights ship inside the package: compress/decompress work right after install."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from gencomp.cli import app
from gencomp.codecs import decode_file, get_codec
from gencomp.codecs.base import ASSETS, default_model_path
from gencomp.metrics import psnr


def _photo() -> Image.Image:
    from skimage import data

    img = Image.fromarray(data.astronaut())
    return img.resize((256, 256), Image.Resampling.LANCZOS)


def test_shipped_weights_and_provenance():
    weights = ASSETS / "vaegan-default.pt"
    info = json.loads((ASSETS / "vaegan-default.json").read_text())
    assert info["fingerprint"] == hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    assert info["bytes"] == weights.stat().st_size < 20_000_000
    assert info["trained_with"]["command"] and info["data"]["shards_manifest_sha256"]


def test_default_codec_uses_shipped_weights_outside_a_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no models/vaegan/model.pt here
    monkeypatch.delenv("GENCOMP_VAEGAN_MODEL", raising=False)
    assert default_model_path("vaegan") == ASSETS / "vaegan-default.pt"
    img = _photo()
    data = get_codec("vaegan-c8").encode(img)
    out = decode_file(data)
    assert out.size == img.size
    bpp = len(data) * 8 / (img.width * img.height)
    assert bpp < 0.5
    assert psnr(np.asarray(img), np.asarray(out)) > 18


def test_cli_compress_decompress_with_no_model_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENCOMP_VAEGAN_MODEL", raising=False)
    _photo().save(tmp_path / "in.png")
    runner = CliRunner()
    result = runner.invoke(app, ["compress", "in.png", "-o", "in.gcz", "--codec", "vaegan-c8"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["decompress", "in.gcz", "-o", "out.png"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").size == (256, 256)


def test_gan_inversion_works_with_the_shipped_generator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENCOMP_GAN_MODEL", raising=False)
    info = json.loads((ASSETS / "gan-default.json").read_text())
    assert info["weights_dtype"] == "float16" and info["bytes"] < 10_000_000
    img = _photo().resize((64, 64))  # one tile
    for bits in (32, 6):
        data = get_codec("gan-inversion", steps=5, bits=bits).encode(img)
        out = decode_file(data)
        assert out.size == img.size
        assert psnr(np.asarray(img), np.asarray(out)) > 8  # the shipped GAN is weak: see BENCHMARKS.md
