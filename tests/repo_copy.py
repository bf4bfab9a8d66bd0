"""A throwaway copy of this repository as its own git repo, with tiny params, for pipeline-level tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import REPO

# The DAG's mechanics, not the models: the tiny demo preset (params.yaml's finetune preset trains the shipped
# architectures, tested in tests/test_train_init_from.py).
TINY = {
    "train_gan": {"preset": "demo", "overrides": {"steps": 30, "encoder_steps": 20}},
    "train_vaegan": {"preset": "demo", "overrides": {"steps": 30}},
}


def copy_repo(dest: Path) -> Path:
    """Tracked and untracked-but-not-ignored files of this checkout, committed into a new git repo at dest."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    tiny_params(dest / "params.yaml")
    git(dest, "init", "-q")
    commit(dest, "tiny pipeline")
    return dest


def tiny_params(path: Path) -> None:
    """Shrink training and the evaluation grid so the whole DAG runs in a couple of minutes on 2 cores."""
    params = yaml.safe_load(path.read_text())
    for section, values in TINY.items():
        params[section].update(values)
    # the demo site is served on this machine: no politeness delay (at 0.25 s it made the crawl 27 s of a 2-min DAG)
    params["scrape"]["download_delay"] = 0
    ev = params["evaluate"]
    ev["datasets"] = [{"name": "test", "shards": "data/shards", "split": "test", "max_images": 1, "max_side": 128}]
    for entry in ev["grid"]:
        settings = entry.get("settings", {})
        if entry["codec"] == "gan-inversion":
            settings["steps"] = 20 if settings["steps"] <= 100 else 40
        if "sweep" in entry:
            entry["sweep"] = {k: v[:2] for k, v in entry["sweep"].items()}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def commit(cwd: Path, message: str) -> None:
    ident = ["-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    git(cwd, *ident, "add", "-A")
    git(cwd, *ident, "commit", "-qm", message)
