"""Flows are thin: their wiring (commands, deployments, schedules) is tested without running the work."""

from __future__ import annotations

import pytest

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
