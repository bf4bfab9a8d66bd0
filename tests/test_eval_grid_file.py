"""`gencomp eval --grid FILE`: the file is checked like params.yaml's grid before any image is read, and
``allow_failures`` decides whether a failed unit makes the command fail."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from gencomp.cli import app

runner = CliRunner()


def _pictures(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(folder / "p.png")
    return folder


def test_a_bad_grid_file_fails_before_any_work_naming_the_key(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("- {codec: webp, settings: {quality: 30}}\n- {codec: jpeg, settings: {qualty: 5}}\n")
    result = runner.invoke(app, ["eval", str(_pictures(tmp_path)), "--grid", str(grid), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "grid[1].settings.qualty" in result.output
    assert not (tmp_path / "o").exists()


def test_allow_failures_in_the_grid_file_keeps_the_exit_code_zero(tmp_path):
    pics = _pictures(tmp_path)
    failing = f"  - {{codec: vaegan, settings: {{model: {tmp_path / 'missing.pt'}}}, label: broken}}\n"
    for allow, code in (("false", 1), ("true", 0)):
        grid = tmp_path / f"grid-{allow}.yaml"
        grid.write_text(f"allow_failures: {allow}\ngrid:\n  - {{codec: webp, settings: {{quality: 30}}}}\n{failing}")
        result = runner.invoke(app, ["eval", str(pics), "--grid", str(grid), "--out", str(tmp_path / allow)])
        assert result.exit_code == code, result.output
        assert (tmp_path / allow / "results.parquet").is_file()  # the failed row is recorded either way
