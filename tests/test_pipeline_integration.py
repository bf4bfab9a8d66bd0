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
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow

TINY = {
    "train_gan": {"overrides": {"steps": 30, "encoder_steps": 20}},
    "train_vaegan": {"overrides": {"steps": 30}},
}


def _copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _tiny_params(path: Path) -> None:
    params = yaml.safe_load(path.read_text())
    for section, values in TINY.items():
        params[section].update(values)
    ev = params["evaluate"]
    ev["datasets"] = [{"name": "test", "shards": "data/shards", "split": "test", "max_images": 1, "max_side": 128}]
    for entry in ev["grid"]:
        settings = entry.get("settings", {})
        if entry["codec"] == "gan-inversion":
            settings["steps"] = min(settings["steps"], 20 if settings["steps"] <= 100 else 40)
        if "sweep" in entry:
            entry["sweep"] = {k: v[:2] for k, v in entry["sweep"].items()}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_dvc_repro_end_to_end(tmp_path, prefect_api):
    work = tmp_path / "repo"
    work.mkdir()
    _copy_repo(work)
    _tiny_params(work / "params.yaml")
    _git(work, "init", "-q")
    _git(work, "-c", "user.email=ci@example.com", "-c", "user.name=ci", "add", "-A")
    _git(work, "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "tiny pipeline")
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

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
