"""The stage commands of `gencomp` (dedupe, shard, eval, report) on a small folder, and their error exits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from gencomp.cli import app

runner = CliRunner()


@pytest.fixture()
def photos(tmp_path):
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = Image.fromarray(getattr(data, name)())
        img.thumbnail((160, 160))
        img.save(folder / f"{name}.png")
    # a near duplicate and a broken file
    Image.open(folder / "coffee.png").convert("RGB").save(folder / "coffee-copy.jpg", quality=60)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return folder


def test_dedupe_then_shard(photos, tmp_path):
    result = runner.invoke(app, ["dedupe", str(photos), "--out", str(tmp_path / "dedup")])
    assert result.exit_code == 0, result.output
    clusters = pd.read_parquet(tmp_path / "dedup" / "clusters.parquet")
    assert {"path", "cluster", "keep"} <= set(clusters.columns)
    coffee = clusters[clusters["path"].str.startswith("coffee")]
    assert coffee["cluster"].nunique() == 1 and coffee["keep"].sum() == 1
    assert not clusters.loc[clusters["path"] == "broken.jpg", "keep"].any()

    result = runner.invoke(app, ["shard", str(photos), "--clusters", str(tmp_path / "dedup" / "clusters.parquet"),
                                 "--out", str(tmp_path / "shards")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "shards" / "_manifest.json").is_file()

    # a resized set in another folder; appending another resolution to it is a usage error, not a traceback
    args = ["shard", str(photos), "--clusters", str(tmp_path / "dedup" / "clusters.parquet"),
            "--out", str(tmp_path / "small")]
    result = runner.invoke(app, [*args, "--max-short-side", "16", "--quality", "80"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "small" / "_manifest.json").read_text())
    assert manifest["resize"] == {"max_short_side": 16, "quality": 80}
    result = runner.invoke(app, [*args, "--max-short-side", "32"])
    assert result.exit_code == 2 and "resize" in result.output


def test_eval_sweep_grid_and_report(photos, tmp_path):
    (photos / "broken.jpg").unlink()
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", str(photos), "--codec", "jpeg", "--sweep", "quality=10,60", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 5 * 2 and set(frame["label"]) == {"jpeg quality=10", "jpeg quality=60"}
    low, high = (frame[frame["label"] == f"jpeg quality={q}"]["bpp"].mean() for q in (10, 60))
    assert low < high

    grid = tmp_path / "grid.yaml"
    grid.write_text('- {codec: webp, settings: {quality: 30}, label: "WebP 30", tables: [table1]}\n'
                    "- {codec: jpeg, sweep: {quality: [10, 60]}, tables: [rd]}\n")
    result = runner.invoke(app, ["eval", str(photos), "--grid", str(grid), "--dataset", "mine", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out / "results.parquet")
    assert set(frame["dataset"]) == {"mine"} and "WebP 30" in set(frame["label"])

    result = runner.invoke(app, ["report", str(out / "results.parquet"), "--dataset", "mine",
                                 "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "report" / "table1.md").read_text()
    assert "WebP 30" in table and (tmp_path / "report" / "index.html").is_file()


def test_errors_exit_non_zero_without_traceback(photos, tmp_path):
    cases = [
        ["eval", str(tmp_path / "missing"), "--codec", "jpeg", "--out", str(tmp_path / "o")],
        ["eval", str(photos), "--out", str(tmp_path / "o")],  # neither --codec nor --grid
        ["eval", str(photos), "--codec", "nope", "--out", str(tmp_path / "o")],
        ["train", "diffusion", "--data", str(tmp_path), "--out", str(tmp_path / "t")],
        ["train", "vaegan", "--data", str(tmp_path), "--out", str(tmp_path / "t"), "--set", "lr=fast"],
        ["train", "vaegan", "--data", str(tmp_path), "--out", str(tmp_path / "t"), "--set", "widht=3"],
        ["scrape", "--out", str(tmp_path / "raw")],  # no URL and no --demo-site
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code != 0, args
        assert "Traceback" not in result.output, result.output


def test_train_refuses_to_overwrite_a_checkpoint_without_resume(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"hours of work")
    result = runner.invoke(app, ["train", "vaegan", "--data", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 2 and "--resume" in result.output, result.output
    assert (out / "checkpoint.pt").read_bytes() == b"hours of work"


def test_setting_values_are_typed():
    from gencomp.cli import parse_settings

    assert parse_settings(["quality=5", "target_bpp=0.25", "model=runs/m.pt", "x=null"]) == {
        "quality": 5, "target_bpp": 0.25, "model": "runs/m.pt", "x": None}
    np.testing.assert_equal(parse_settings([]), {})
