"""params.yaml is read and validated in one place, and a bad value fails with the key's path."""

from __future__ import annotations

import pytest
import yaml

from gencomp.config import ParamsError, load_params
from tests.conftest import REPO


def _write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repo_params_are_valid():
    p = load_params(REPO / "params.yaml")
    assert p.scrape.uses_demo_site
    labels = [entry.label for entry in p.evaluate.grid if entry.label]
    for row in ("GAN (100 steps)", "GAN (1000 steps)", "Lossy 8 bits", "Lossy 6 bits", "Lossy 4 bits", "JPEG (1%)"):
        assert row in labels
    channels = sorted(e.settings["channels"] for e in p.evaluate.grid if e.codec == "vaegan")
    assert channels == [2, 4, 8, 16, 28]


def test_unknown_key_is_refused_with_its_path(tmp_path):
    data = _repo_params()
    data["dedupe"]["treshold"] = 3
    with pytest.raises(ParamsError, match=r"dedupe\.treshold"):
        load_params(_write(tmp_path, data))


def test_bad_split_is_refused(tmp_path):
    data = _repo_params()
    data["shard"]["split"] = {"train": 0.9, "val": 0.2, "test": 0.1}
    with pytest.raises(ParamsError, match="sum to 1"):
        load_params(_write(tmp_path, data))


def test_report_dataset_must_exist(tmp_path):
    data = _repo_params()
    data["report"]["dataset"] = "kodak"
    with pytest.raises(ParamsError, match="report.dataset"):
        load_params(_write(tmp_path, data))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("scrape: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_dask_runner_needs_an_address(tmp_path):
    data = _repo_params()
    data["evaluate"]["runner"] = "dask"
    with pytest.raises(ParamsError, match="dask_address"):
        load_params(_write(tmp_path, data))


def test_non_http_start_url_is_refused(tmp_path):
    data = _repo_params()
    data["scrape"]["start_urls"] = ["ftp://example.com/"]
    with pytest.raises(ParamsError, match="not http"):
        load_params(_write(tmp_path, data))


def test_shard_resize_setting(tmp_path):
    data = _repo_params()
    assert load_params(_write(tmp_path, data)).shard.resize is None
    data["shard"]["resize"] = {"max_short_side": 512}
    resize = load_params(_write(tmp_path, data)).shard.resize
    assert resize.model_dump() == {"max_short_side": 512, "quality": 90}
    data["shard"]["resize"] = {"max_short_side": 8}
    with pytest.raises(ParamsError, match=r"shard\.resize\.max_short_side"):
        load_params(_write(tmp_path, data))
