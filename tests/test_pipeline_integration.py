"""The whole DAG, end to end, with tiny settings, in a temporary git repository: `dvc repro` from scratch."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.repo_copy import copy_repo

pytestmark = pytest.mark.slow

# tables whose bytes must not depend on the run (extended.md/csv also carry encode/decode timings)
DETERMINISTIC = ("table1.md", "table1.csv", "table2.md", "table2.csv", "metrics.json", "bdrate.md", "rd.csv")


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def _env(prefect_api: str) -> dict:
    return {**os.environ, "PREFECT_API_URL": prefect_api,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_dvc_repro_end_to_end_and_reproducible(tmp_path, prefect_api):
    work = copy_repo(tmp_path / "repo")
    env = _env(prefect_api)

    _run(["dvc", "repro"], work, env)

    reports = work / "reports"
    for name in ("table1.md", "table1.csv", "table2.md", "table2.csv", "samples.png", "index.html", "metrics.json"):
        assert (reports / name).is_file(), f"missing {name}"
    for table in ("table1.csv", "table2.csv"):
        rows = list(csv.DictReader((reports / table).open()))
        assert rows, f"{table} is empty"
        for row in rows:
            psnr, cr = float(row["PSNR"]), float(row["CR"])
            assert 5 <= psnr <= 60, (table, row)
            assert cr > 1, (table, row)
    labels = [r["Method"] for r in csv.DictReader((reports / "table1.csv").open())]
    assert "JPEG (1%)" in labels and "Lossy 8 bits" in labels

    metrics = _run(["dvc", "metrics", "show", "--json"], work, env).stdout
    assert json.loads(metrics), "dvc metrics show printed nothing"

    again = _run(["dvc", "repro"], work, env)
    assert "Running stage" not in again.stdout, again.stdout
    status = _run(["dvc", "status"], work, env).stdout
    assert "changed" not in status, status

    # the default local remote: push everything, lose the cache and the outputs, pull them back
    _run(["dvc", "push"], work, env)
    table = (reports / "table1.md").read_bytes()
    shutil.rmtree(work / ".dvc" / "cache")
    shutil.rmtree(work / "models")
    (reports / "table1.md").unlink()
    _run(["dvc", "pull"], work, env)
    assert (reports / "table1.md").read_bytes() == table
    assert (work / "models" / "vaegan" / "model.pt").is_file()
    assert (work / ".dvc-storage").is_dir()

    # a second clean run from another copy gives byte-identical tables on CPU
    other = copy_repo(tmp_path / "repo2")
    _run(["dvc", "repro"], other, env)
    for name in DETERMINISTIC:
        assert (other / "reports" / name).read_bytes() == (reports / name).read_bytes(), f"{name} differs"
