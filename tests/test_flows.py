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
