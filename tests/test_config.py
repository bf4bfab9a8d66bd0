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


def _refused(tmp_path, data, key_path: str, message: str = "") -> str:
    with pytest.raises(ParamsError) as info:
        load_params(_write(tmp_path, data))
    text = str(info.value)
    assert f"  {key_path}: " in text, text
    assert message in text, text
    return text


def test_grid_codecs_and_settings_are_checked_against_the_registry(tmp_path):
    data = _repo_params()
    data["evaluate"]["grid"][3]["codec"] = "jpegg"
    _refused(tmp_path, data, "evaluate.grid[3].codec", "unknown codec 'jpegg'; known: avif, gan-inversion")

    data = _repo_params()
    jpeg = next(i for i, e in enumerate(data["evaluate"]["grid"]) if e["codec"] == "jpeg" and "settings" in e)
    data["evaluate"]["grid"][jpeg]["settings"] = {"qualty": 1}
    _refused(tmp_path, data, f"evaluate.grid[{jpeg}].settings.qualty", "has no setting 'qualty'")

    data["evaluate"]["grid"][jpeg]["settings"] = {"quality": True}  # strict: a bool is no quality
    _refused(tmp_path, data, f"evaluate.grid[{jpeg}].settings.quality", "must be of type int")

    data["evaluate"]["grid"][jpeg]["settings"] = {"quality": 500}  # the codec's own range check
    _refused(tmp_path, data, f"evaluate.grid[{jpeg}].settings", "quality must be in 1..100")

    data = _repo_params()
    sweep = next(i for i, e in enumerate(data["evaluate"]["grid"]) if "sweep" in e)
    data["evaluate"]["grid"][sweep]["sweep"]["quality"][1] = "high"
    _refused(tmp_path, data, f"evaluate.grid[{sweep}].sweep.quality[1]", "must be of type int")

    data = _repo_params()
    data["evaluate"]["grid"][0]["settings"]["bits"] = 40
    _refused(tmp_path, data, "evaluate.grid[0].settings", "bits must be 32, 16 or 1..12")

    data = _repo_params()
    data["evaluate"]["grid"].append(dict(data["evaluate"]["grid"][jpeg]))
    _refused(tmp_path, data, "evaluate.grid", "share the label")


def test_a_grid_for_a_gpu_loads_on_a_machine_without_one(tmp_path):
    """Where a codec runs is checked where it runs: a params.yaml made for a GPU machine validates anywhere."""
    data = _repo_params()
    data["evaluate"]["grid"][0]["settings"]["device"] = "cuda"
    assert load_params(_write(tmp_path, data)).evaluate.grid[0].settings["device"] == "cuda"
    data["evaluate"]["grid"][0]["settings"]["device"] = "tpu"
    _refused(tmp_path, data, "evaluate.grid[0].settings.device", "must be one of")


def test_training_presets_and_overrides_are_checked_at_load(tmp_path):
    data = _repo_params()
    data["train_gan"]["overrides"] = {"lr_g": -1.0}
    _refused(tmp_path, data, "train_gan.overrides.lr_g", "must be > 0")
    data["train_gan"]["overrides"] = {"steps": -1}
    _refused(tmp_path, data, "train_gan.overrides.steps", "must be >= 0")
    # steps = 0 trains only the inversion encoder of the init_from model: it needs encoder steps
    data["train_gan"]["overrides"] = {"steps": 0, "encoder_steps": 0}
    _refused(tmp_path, data, "train_gan.overrides.steps", "needs encoder_steps >= 1 and init_from")
    data["train_gan"]["overrides"] = {"ema_decay": 1.0}
    _refused(tmp_path, data, "train_gan.overrides.ema_decay", "< 1")
    data["train_gan"]["overrides"] = {"compile": 1}
    _refused(tmp_path, data, "train_gan.overrides.compile", "true/false")

    data = _repo_params()
    data["train_vaegan"]["overrides"] = {"stepz": 10}
    _refused(tmp_path, data, "train_vaegan.overrides.stepz", "valid keys: ")
    data["train_vaegan"]["overrides"] = {"steps": 0}
    _refused(tmp_path, data, "train_vaegan.overrides.steps", "must be >= 1")
    data["train_vaegan"]["overrides"] = {"crop": 40}
    _refused(tmp_path, data, "train_vaegan.overrides.crop", "divisible by downsample")
    data["train_vaegan"]["overrides"] = {}
    data["train_vaegan"]["preset"] = "huge"
    _refused(tmp_path, data, "train_vaegan.preset", "valid presets: demo, cpu-full, gpu")

    data = _repo_params()
    data["train_vaegan"]["overrides"] = {"steps": 12, "lr": "3e-4"}  # YAML 1.1 reads 3e-4 as a string
    assert load_params(_write(tmp_path, data)).train_vaegan.overrides["steps"] == 12


def test_strict_types_refuse_a_bool_for_a_number(tmp_path):
    data = _repo_params()
    data["dedupe"]["threshold"] = True
    _refused(tmp_path, data, "dedupe.threshold", "valid integer")
    data = _repo_params()
    data["evaluate"]["workers"] = "2"
    _refused(tmp_path, data, "evaluate.workers", "valid integer")
    data = _repo_params()
    data["evaluate"]["allow_failures"] = "yes"
    _refused(tmp_path, data, "evaluate.allow_failures", "valid boolean")


def test_deployment_schedule_timezone_and_presets(tmp_path):
    data = _repo_params()
    data["deployments"]["rescrape_cron"] = "*/15 0-6 1,15 jan-mar mon-fri"
    assert load_params(_write(tmp_path, data)).deployments.rescrape_cron.startswith("*/15")
    for cron, message in (("61 3 * * 1", "'61' is not a valid minute"), ("0 3 * *", "needs 5 fields"),
                          ("0 3 * * funday", "not a valid day of week"), ("0 */0 * * *", "not a valid hour")):
        data["deployments"]["rescrape_cron"] = cron
        _refused(tmp_path, data, "deployments.rescrape_cron", message)
    data = _repo_params()
    data["deployments"]["timezone"] = "Mars/Olympus"
    _refused(tmp_path, data, "deployments.timezone", "unknown timezone")
    data = _repo_params()
    data["deployments"]["train_presets"] = ["demo", "tiny"]
    _refused(tmp_path, data, "deployments.train_presets[1]", "no gan preset 'tiny'")


def test_grid_files_are_checked_like_params_grids(tmp_path):
    from gencomp.config import load_grid

    path = tmp_path / "grid.yaml"
    path.write_text("- {codec: webp, settings: {quality: 30}}\n- {codec: jpeg, sweep: {qualty: [5, 50]}}\n")
    with pytest.raises(ParamsError, match=r"grid\[1\]\.sweep\.qualty: codec 'jpeg' has no setting"):
        load_grid(path)
    path.write_text("allow_failures: true\ngrid:\n  - {codec: webp, settings: {quality: 30}}\n")
    grid = load_grid(path)
    assert grid.allow_failures and grid.grid_spec() == [{"codec": "webp", "settings": {"quality": 30}, "tables": []}]
