"""Flows are thin: their wiring (commands, deployments, schedules) is tested without running the work."""

from __future__ import annotations

import pytest
import yaml

from flows.scrape import crawl_command
from gencomp.config import load_params
from tests.conftest import REPO


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def test_scrape_command_uses_demo_site_when_no_start_urls():
    p = load_params(REPO / "params.yaml").scrape
    cmd = crawl_command(p)
    assert cmd[1:3] == ["-m", "scraper.crawl"]
    assert "--demo-site" in cmd and "--start-url" not in cmd
    real = p.model_copy(update={"start_urls": ["https://example.com/gallery"], "allowed_domains": ["example.com"]})
    cmd = crawl_command(real)
    assert "--demo-site" not in cmd
    assert cmd[cmd.index("--start-url") + 1] == "https://example.com/gallery"
    assert cmd[cmd.index("--allowed-domain") + 1] == "example.com"


def test_deployments_cover_every_entry_point_and_rescrape_is_scheduled():
    from flows.deployments import build_deployments

    deployments = {f"{d.flow_name}/{d.name}": d for d in build_deployments()}
    for name in ("train-gan/demo", "train-vaegan/demo", "train-vaegan/cpu-full", "train-vaegan/gpu",
                 "evaluate/grid", "pipeline/repro", "rescrape/scheduled"):
        assert name in deployments, sorted(deployments)
    assert deployments["train-vaegan/demo"].parameters == {"preset": "demo", "via_dvc": True}
    (schedule,) = deployments["rescrape/scheduled"].schedules
    p = load_params(REPO / "params.yaml").deployments
    assert schedule.schedule.cron == p.rescrape_cron
    assert schedule.schedule.timezone == p.timezone
    assert not deployments["pipeline/repro"].schedules


def test_write_params_keeps_comments_and_refuses_invalid_values(tmp_path):
    from flows.train import write_params
    from gencomp.config import ParamsError

    path = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_text()
    path.write_text(original)
    write_params({"train_vaegan.preset": "cpu-full", "train_vaegan.overrides": {"steps": 12}}, path)
    p = load_params(path)
    assert p.train_vaegan.preset == "cpu-full" and p.train_vaegan.overrides == {"steps": 12}
    text = path.read_text()
    assert "# gencomp parameters" in text and "# Table 1 (approach 1" in text  # comments survive
    assert len(text.splitlines()) == len(original.splitlines())  # only the two values changed

    before = path.read_text()
    with pytest.raises(ParamsError, match="split"):
        write_params({"shard.split": {"train": 2.0}}, path)
    assert path.read_text() == before
    assert not list(tmp_path.glob(".params.yaml*"))


def test_scrape_processes_share_a_redis_queue_with_distinct_worker_ids(tmp_path):
    from gencomp.config import ParamsError

    p = load_params(REPO / "params.yaml").scrape.model_copy(update={
        "start_urls": ["https://example.com/"], "processes": 2, "redis_url": "redis://127.0.0.1:6379/0"})
    commands = [crawl_command(p, f"w{k}") for k in range(2)]
    for k, cmd in enumerate(commands):
        assert cmd[cmd.index("--redis-url") + 1] == "redis://127.0.0.1:6379/0"
        assert cmd[cmd.index("--worker-id") + 1] == f"w{k}"
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["scrape"]["processes"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match="redis_url"):
        load_params(tmp_path / "params.yaml")


def test_a_typo_anywhere_stops_a_stage_before_it_starts(tmp_path):
    """`python -m flows.shard` (what `dvc repro` runs) with a typo in another stage's section: exit code 2,
    the key's path on stderr, nothing written, and no Prefect run started."""
    import os
    import subprocess
    import sys

    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["shard"]["out"] = str(tmp_path / "shards")
    data["evaluate"]["grid"][3]["settings"] = {"qualty": 1}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    env = {**os.environ, "GENCOMP_PARAMS": str(params_file), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    proc = subprocess.run([sys.executable, "-m", "flows.shard"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "evaluate.grid[3].settings.qualty: codec 'gan-inversion' has no setting 'qualty'" in proc.stderr, proc.stderr
    assert not (tmp_path / "shards").exists()


def test_a_failed_evaluation_unit_fails_the_stage_unless_allowed(tmp_path, monkeypatch, prefect_api):
    import numpy as np
    import pandas as pd
    from PIL import Image

    from flows.evaluate import EvaluationFailed, evaluate_flow

    (tmp_path / "pics").mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "pics" / "p.png")
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["evaluate"].update({
        "out": str(tmp_path / "results"), "datasets": [{"name": "pics", "dir": str(tmp_path / "pics")}],
        "grid": [{"codec": "webp", "settings": {"quality": 30}, "label": "WebP 30"},
                 {"codec": "vaegan", "settings": {"model": str(tmp_path / "no-such-model.pt")}, "label": "VAE-GAN"}],
    })
    data["report"]["dataset"] = "pics"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("GENCOMP_PARAMS", str(tmp_path / "params.yaml"))
    with pytest.raises(EvaluationFailed, match="1 of 2 evaluation units failed"):
        evaluate_flow()
    frame = pd.read_parquet(tmp_path / "results" / "results.parquet")
    assert frame.set_index("label")["error"].notna().to_dict() == {"WebP 30": False, "VAE-GAN": True}

    data["evaluate"]["allow_failures"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    assert evaluate_flow() == {"rows": 2, "errors": 1}
