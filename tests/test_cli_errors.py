"""Every command with bad options or hostile inputs: one escaped `error:` line, the README's exit code, no
traceback; and the codec commands never write over their inputs or (without --force) over existing files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gencomp.cli import app

runner = CliRunner()
USAGE, REFUSED = 2, 3


def _photo(path, size=(40, 24)):
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([x * 6, y * 10, (x + y) * 4], axis=-1) % 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(path)
    return path


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_error_line(result, code: int, *needles: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture()
def folder(tmp_path):
    _photo(tmp_path / "imgs" / "a.png")
    _photo(tmp_path / "imgs" / "b.png", (32, 32))
    return tmp_path


@pytest.mark.parametrize("args, code, needles", [
    (["dedupe", "{imgs}", "-o", "{out}", "--threshold", "-5"], USAGE, ["--threshold -5"]),
    (["dedupe", "{imgs}", "-o", "{out}", "--threshold", "abc"], USAGE, ["--threshold"]),
    (["dedupe", "{imgs}", "-o", "{out}", "--hash", "md5"], USAGE, ["--hash 'md5'"]),
    (["dedupe", "{imgs}", "-o", "{out}", "--workers", "0"], USAGE, ["--workers"]),
    (["dedupe", "{tmp}/x[/bold]", "-o", "{out}"], USAGE, ["x[/bold] is not a folder"]),
    (["shard", "{imgs}", "--clusters", "{tmp}/none.parquet", "-o", "{out}"], USAGE, ["none.parquet"]),
    (["shard", "{imgs}", "--clusters", "{tmp}/c.parquet", "-o", "{out}", "--target-mb", "0"], USAGE, ["--target-mb"]),
    (["shard", "{imgs}", "--clusters", "{tmp}/c.parquet", "-o", "{out}", "--max-short-side", "8"], USAGE,
     ["--max-short-side"]),
    (["shard", "{imgs}", "--clusters", "{tmp}/c.parquet", "-o", "{out}", "--quality", "101"], USAGE, ["--quality"]),
    (["train", "gan", "--data", "{imgs}", "-o", "{out}", "--preset", "nope"], USAGE, ["nope"]),
    (["train", "vae", "--data", "{imgs}", "-o", "{out}"], USAGE, ["KIND"]),
    (["train", "gan", "--data", "{imgs}", "-o", "{out}", "--set", "steps"], USAGE, ["key=value"]),
    (["train", "gan", "--data", "{tmp}/missing[x]", "-o", "{out}"], USAGE, ["missing[x]"]),
    (["eval", "{imgs}", "-o", "{out}", "--codec", "jpeg", "--max-images", "-1"], USAGE, ["--max-images -1"]),
    (["eval", "{imgs}", "-o", "{out}", "--codec", "jpeg", "--max-side", "3"], USAGE, ["--max-side"]),
    (["eval", "{imgs}", "-o", "{out}", "--codec", "jpeg", "--workers", "0"], USAGE, ["--workers"]),
    (["eval", "{imgs}", "-o", "{out}", "--codec", "nope"], USAGE, ["nope"]),
    (["eval", "{imgs}", "-o", "{out}", "--codec", "jpeg", "-s", "quality=500"], USAGE, ["quality"]),
    (["eval", "{imgs}", "-o", "{out}"], USAGE, ["--codec"]),
    (["report", "{tmp}/none.parquet", "-o", "{out}"], USAGE, ["none.parquet"]),
    (["report", "{imgs}/a.png", "-o", "{out}"], REFUSED, ["not a readable results.parquet"]),
    (["compress", "{imgs}/a.png", "-o", "{out}.gcz", "--codec", "nope"], USAGE, ["nope"]),
    (["compress", "{imgs}/a.png", "-o", "{out}.gcz", "--quality", "500"], USAGE, ["quality"]),
    (["compress", "{imgs}/a.png", "-o", "{out}.gcz", "--max-pixels", "0"], USAGE, ["--max-pixels"]),
    (["compress", "{imgs}/a.png", "-o", "{out}.gcz", "--max-pixels", "100"], REFUSED, ["too_large"]),
    (["decompress", "{imgs}/a.png", "-o", "{out}.png", "--device", "tpu"], USAGE, ["device"]),
    (["info", "{imgs}/a.png"], REFUSED, ["not a .gcz"]),
    (["info", "{tmp}/none[red].gcz"], USAGE, ["none[red].gcz"]),
    (["nonsense"], USAGE, ["nonsense"]),
    (["dedupe", "{imgs}", "-o", "{out}", "--no-such-option"], USAGE, ["--no-such-option"]),
])
def test_bad_options_give_one_escaped_line_and_the_exit_code(folder, args, code, needles):
    subst = {"imgs": folder / "imgs", "out": folder / "out", "tmp": folder}
    (folder / "c.parquet").write_bytes(b"")  # exists; the option checks come first
    result = _run(*[a.format(**subst) for a in args])
    _one_error_line(result, code, *needles)


def test_a_60_megapixel_single_row_png_is_refused_clearly(tmp_path):
    path = tmp_path / "row.png"
    Image.new("RGB", (60_000_000, 1), (10, 20, 30)).save(path)
    result = _run("compress", path, "-o", tmp_path / "row.gcz", "--codec", "jpeg")
    _one_error_line(result, REFUSED, "too_large", "65500")
    assert not (tmp_path / "row.gcz").exists()


def test_a_refused_file_named_with_markup_keeps_its_name(tmp_path):
    path = tmp_path / "[bold]x[red].gcz"
    path.write_bytes(b"\x89GCZ\x01 truncated")
    result = _run("decompress", path, "-o", tmp_path / "out.png")
    _one_error_line(result, REFUSED, "[bold]x[red].gcz")


def test_compress_never_writes_over_its_input(folder):
    src = folder / "imgs" / "a.png"
    before = src.read_bytes()
    for extra in ([], ["--force"]):
        _one_error_line(_run("compress", src, "-o", src, *extra), USAGE, "over an input")
        assert src.read_bytes() == before


def test_existing_outputs_need_force(folder):
    src, out = folder / "imgs" / "a.png", folder / "a.gcz"
    assert _run("compress", src, "-o", out).exit_code == 0
    first = out.read_bytes()
    _one_error_line(_run("compress", src, "-o", out, "--quality", "20"), USAGE, "already exist", "--force")
    assert out.read_bytes() == first
    assert _run("compress", src, "-o", out, "--quality", "20", "--force").exit_code == 0
    assert out.read_bytes() != first
    png = folder / "a-out.png"
    png.write_bytes(b"precious")
    _one_error_line(_run("decompress", out, "-o", png), USAGE, "already exist")
    assert png.read_bytes() == b"precious"


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_in_place_directory_runs_are_refused(folder, command):
    imgs = folder / "imgs"
    if command == "decompress":
        assert _run("compress", imgs, "-o", folder / "gcz").exit_code == 0
        imgs = folder / "gcz"
        for png in (folder / "imgs").glob("*.png"):  # originals beside the .gcz files, as in the issue
            (imgs / png.name).write_bytes(png.read_bytes())
    before = {p.name: p.read_bytes() for p in imgs.iterdir()}
    _one_error_line(_run(command, imgs, "-o", imgs), USAGE, "is the input directory")
    _one_error_line(_run(command, imgs, "-o", imgs / "sub"), USAGE, "inside the input directory")
    _one_error_line(_run(command, imgs, "-o", imgs, "--force"), USAGE, "is the input directory")
    assert {p.name: p.read_bytes() for p in imgs.iterdir()} == before


def test_directory_run_refuses_existing_outputs_before_writing_any(folder):
    imgs, out = folder / "imgs", folder / "gcz"
    out.mkdir()
    (out / "b.gcz").write_bytes(b"keep")
    _one_error_line(_run("compress", imgs, "-o", out), USAGE, "b.gcz", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["b.gcz"] and (out / "b.gcz").read_bytes() == b"keep"
