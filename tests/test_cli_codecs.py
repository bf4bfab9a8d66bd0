"""The codec CLI commands, registered on a tiny typer app and run with CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from gencomp.cli_codecs import EXIT_REFUSED, EXIT_USAGE, register
from gencomp.data.images import open_image
from gencomp.models import Generator, InversionEncoder, save_gan

app = typer.Typer()


@app.callback()
def _root() -> None:
    """A stand-in for the gencomp app."""


register(app)
runner = CliRunner()


def _save_photo(path, size=(40, 24)) -> None:
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([x * 6, y * 10, (x + y) * 4], axis=-1) % 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(path)


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_compress_info_decompress_single_file(tmp_path):
    _save_photo(tmp_path / "in.png")
    result = _invoke("compress", tmp_path / "in.png", "-o", tmp_path / "out.gcz", "--codec", "webp", "--quality", "30")
    assert result.exit_code == 0, result.output
    assert "bpp" in result.output
    info = _invoke("info", tmp_path / "out.gcz", "--json")
    assert info.exit_code == 0
    fields = json.loads(info.output)
    assert fields["codec"] == "webp" and fields["params"] == {"q": 30}
    assert fields["file_bytes"] == (tmp_path / "out.gcz").stat().st_size
    result = _invoke("decompress", tmp_path / "out.gcz", "-o", tmp_path / "back.png")
    assert result.exit_code == 0, result.output
    assert open_image(tmp_path / "back.png").size == (40, 24)


def test_directory_in_directory_out_with_mirrored_names(tmp_path):
    _save_photo(tmp_path / "src" / "a.png")
    _save_photo(tmp_path / "src" / "nested" / "b.jpg", (17, 9))
    result = _invoke("compress", tmp_path / "src", "-o", tmp_path / "gcz", "--codec", "jpeg", "--quality", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "gcz").as_posix() for p in (tmp_path / "gcz").rglob("*.gcz")) == [
        "a.gcz", "nested/b.gcz"]
    result = _invoke("decompress", tmp_path / "gcz", "-o", tmp_path / "png")
    assert result.exit_code == 0, result.output
    assert open_image(tmp_path / "png" / "nested" / "b.png").size == (17, 9)


def test_a_bad_file_in_a_directory_fails_alone(tmp_path):
    _save_photo(tmp_path / "src" / "good.png")
    (tmp_path / "src" / "bad.png").write_bytes(b"<html>not an image</html>")
    result = _invoke("compress", tmp_path / "src", "-o", tmp_path / "out")
    assert result.exit_code == EXIT_REFUSED
    assert "bad.png" in result.output and "not_an_image" in result.output
    assert (tmp_path / "out" / "good.gcz").exists() and not (tmp_path / "out" / "bad.gcz").exists()
    assert "Traceback" not in result.output


def test_corrupt_container_exits_3_and_writes_nothing(tmp_path):
    _save_photo(tmp_path / "in.png")
    assert _invoke("compress", tmp_path / "in.png", "-o", tmp_path / "x.gcz").exit_code == 0
    data = bytearray((tmp_path / "x.gcz").read_bytes())
    data[40] ^= 0x10
    (tmp_path / "x.gcz").write_bytes(bytes(data))
    result = _invoke("decompress", tmp_path / "x.gcz", "-o", tmp_path / "x.png")
    assert result.exit_code == EXIT_REFUSED
    assert "CRC32" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists() and not list(tmp_path.glob(".x.png*"))
    result = _invoke("info", tmp_path / "in.png")
    assert result.exit_code == EXIT_REFUSED and "not a .gcz file" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--codec", "nope"], "unknown codec"),
        (["--bits", "8"], "no setting"),
        (["--quality", "500"], "quality must be"),
        (["--set", "quality"], "key=value"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    _save_photo(tmp_path / "in.png")
    result = _invoke("compress", tmp_path / "in.png", "-o", tmp_path / "o.gcz", *args)
    assert result.exit_code == EXIT_USAGE
    assert message in result.output and "Traceback" not in result.output


def test_missing_input_and_missing_model_exit_2(tmp_path):
    result = _invoke("compress", tmp_path / "nothing.png", "-o", tmp_path / "o.gcz")
    assert result.exit_code == EXIT_USAGE and "no such file" in result.output
    _save_photo(tmp_path / "in.png")
    result = _invoke("compress", tmp_path / "in.png", "-o", tmp_path / "o.gcz", "--codec", "vaegan",
                     "--model", tmp_path / "none.pt")
    assert result.exit_code == EXIT_USAGE and "not found" in result.output


def test_generative_codec_through_the_cli(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "gan.pt"
    save_gan(model, generator=Generator(latent_dim=8, tile=8, width=8), encoder=InversionEncoder(8, 8, 8))
    _save_photo(tmp_path / "in.png", (16, 16))
    result = _invoke("compress", tmp_path / "in.png", "-o", tmp_path / "g.gcz", "--codec", "gan-inversion",
                     "--model", model, "--steps", "2", "--bits", "4", "--set", "entropy=gaussian")
    assert result.exit_code == 0, result.output
    fields = json.loads(_invoke("info", tmp_path / "g.gcz", "--json").output)
    assert fields["codec"] == "gan-inversion" and fields["params"]["b"] == 4 and fields["params"]["e"] == 1
    result = _invoke("decompress", tmp_path / "g.gcz", "-o", tmp_path / "g.png", "--model", model)
    assert result.exit_code == 0, result.output
    assert open_image(tmp_path / "g.png").size == (16, 16)
    # --device: auto decodes wherever it can; a device that is not there, or no device at all, is a usage error
    result = _invoke("decompress", tmp_path / "g.gcz", "-o", tmp_path / "g2.png", "--model", model, "--device", "auto")
    assert result.exit_code == 0, result.output
    if not torch.cuda.is_available():
        assert open_image(tmp_path / "g2.png").tobytes() == open_image(tmp_path / "g.png").tobytes()
        for command in (("compress", tmp_path / "in.png", "-o", tmp_path / "c.gcz", "--codec", "gan-inversion"),
                        ("decompress", tmp_path / "g.gcz", "-o", tmp_path / "c.png")):
            result = _invoke(*command, "--model", model, "--device", "cuda")
            assert result.exit_code == EXIT_USAGE and "no CUDA GPU" in result.output, result.output
            assert not (tmp_path / "c.gcz").exists() and not (tmp_path / "c.png").exists()
    result = _invoke("decompress", tmp_path / "g.gcz", "-o", tmp_path / "c.png", "--device", "tpu")
    assert result.exit_code == EXIT_USAGE and "cpu, cuda or auto" in result.output


def test_codecs_listing(tmp_path):
    result = _invoke("codecs", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["jpeg"]["family"] == "classical"
    assert {"name": "quality", "type": "int", "default": 75}.items() <= rows["jpeg"]["params"][0].items()
    assert "channels" not in {p["name"] for p in rows["vaegan-c8"]["params"]}
    plain = _invoke("codecs")
    assert plain.exit_code == 0 and "gan-inversion" in plain.output
