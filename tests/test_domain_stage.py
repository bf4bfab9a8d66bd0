"""The domain stage and `gencomp domains` on a synthetic CelebA-like folder: they build the enabled (or named)
domains into <out>/<name>, never read a domain that is not asked for, and refuse bad requests by name; a domain
model trains at the domain's side."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from gencomp.cli import app
from gencomp.data.shards import read_manifest
from tests.conftest import REPO
from tests.test_domains import _faces_folder

runner = CliRunner()


def _params(tmp_path, faces_folder, enabled=("faces",), **sections) -> str:
    """The repository's params with the domains read from ``faces_folder`` (aerial: a folder that does not
    exist) and written under tmp_path."""
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["domains"].update(out=str(tmp_path / "domains"), enabled=list(enabled))
    data["domains"]["faces"]["folder"] = str(faces_folder)
    data["domains"]["aerial"]["folder"] = str(tmp_path / "no-such-folder")
    data["train_domains"]["out"] = str(tmp_path / "models")
    for name, value in sections.items():
        data[name].update(value)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_cli_builds_the_enabled_domains_and_is_up_to_date_on_a_rerun(tmp_path):
    params = _params(tmp_path, _faces_folder(tmp_path))
    result = runner.invoke(app, ["domains", "--params", params])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert list(summary) == ["faces"]  # aerial (its folder missing) is not enabled, so never read
    assert summary["faces"]["images"] == 48 and not summary["faces"]["up_to_date"]
    assert "no redistribution" in summary["faces"]["terms"]
    manifest = read_manifest(tmp_path / "domains" / "faces")
    assert manifest["domain"]["spec"]["crop_box"] == [0, 20, 178, 198]
    assert {s["rows"] for s in manifest["shards"]} and manifest["rows"] == 48

    again = runner.invoke(app, ["domains", "faces", "--params", params])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["faces"]["up_to_date"]


def test_cli_out_and_folder_options(tmp_path):
    params = _params(tmp_path, tmp_path / "elsewhere", enabled=())
    folder = _faces_folder(tmp_path, people=6, each=2)
    result = runner.invoke(app, ["domains", "faces", "--folder", str(folder), "--out", str(tmp_path / "mine"),
                                 "--params", params])
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "mine" / "faces")["rows"] == 12
    assert not (tmp_path / "domains").exists()


@pytest.mark.parametrize("args, message", [
    ([], "no domain named and none enabled"),
    (["clouds"], "no domain 'clouds'"),
    (["faces", "aerial", "--folder", "x"], "name exactly one domain"),
    (["aerial"], "set domains.aerial.folder"),
])
def test_cli_refusals_are_one_line_naming_what_is_wrong(tmp_path, args, message):
    params = _params(tmp_path, tmp_path / "no-faces", enabled=())
    result = runner.invoke(app, ["domains", *args, "--params", params])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_cli_refuses_invalid_params_naming_the_key(tmp_path):
    params = _params(tmp_path, tmp_path, enabled=("facse",))
    result = runner.invoke(app, ["domains", "--params", params])
    assert result.exit_code == 2 and "domains.enabled[0]" in result.output, result.output


def test_the_stage_builds_enabled_domains_only(tmp_path, monkeypatch, prefect_api):
    from flows.domains import DomainNotEnabled, domains_flow

    monkeypatch.setenv("GENCOMP_PARAMS", _params(tmp_path, _faces_folder(tmp_path)))
    done = domains_flow()
    assert list(done) == ["faces"] and done["faces"]["images"] == 48
    assert sum(done["faces"]["split_counts"].values()) == 48
    assert domains_flow(["faces"])["faces"]["up_to_date"]
    with pytest.raises(DomainNotEnabled, match="'aerial' is not in domains.enabled"):
        domains_flow(["aerial"])
    assert sorted(p.name for p in (tmp_path / "domains").iterdir()) == ["faces"]


def test_a_missing_folder_of_an_enabled_domain_fails_the_stage_naming_the_setting(tmp_path, monkeypatch,
                                                                                   prefect_api):
    from flows.domains import domains_flow
    from gencomp.data.domains import DomainError

    monkeypatch.setenv("GENCOMP_PARAMS", _params(tmp_path, tmp_path / "gone", enabled=("faces",)))
    with pytest.raises(DomainError, match=r"set domains\.faces\.folder"):
        domains_flow()


def test_a_domain_model_trains_at_the_domains_side(tmp_path, monkeypatch, prefect_api):
    """train_domain@vaegan-faces: the domain's shards, the crop set to its side (128), the zoo's photo model
    as the start (no faces model installed here: the test names vaegan-default), into <out>/vaegan-faces."""
    from flows.domains import domains_flow
    from flows.train import train_domain_flow

    tiny = {"init_from": "vaegan-default", "steps": 2, "batch_size": 2, "crops_per_image": 1, "val_batches": 1,
            "prior_fit_batches": 1, "warmup_steps": 0}
    params = _params(tmp_path, _faces_folder(tmp_path), train_domains={
        "faces": {"gan": {"preset": "finetune", "overrides": {}},
                  "vaegan": {"preset": "finetune", "overrides": tiny}}})
    monkeypatch.setenv("GENCOMP_PARAMS", params)
    domains_flow()
    summary = train_domain_flow("vaegan", "faces")
    out = tmp_path / "models" / "vaegan-faces"
    assert (out / "model.pt").is_file() and summary["step"] == 2
    saved = json.loads((out / "train_summary.json").read_text())
    assert saved["config"]["crop"] == 128, saved["config"]
    sidecar = json.loads((out / "model.json").read_text())  # the report's cross-domain matrix reads the domain
    assert sidecar["domain"] == "faces" and "no redistribution" in sidecar["terms"]
    from gencomp.models.zoo import model_domain

    assert model_domain(out / "model.pt", summary["fingerprint"]) == "faces"
    with pytest.raises(ValueError, match="'aerial' is not in domains.enabled"):
        train_domain_flow("vaegan", "aerial")


@pytest.mark.slow
def test_dvc_builds_and_trains_an_enabled_domain_through_foreach_and_matrix(tmp_path, prefect_api):
    """In a copy of the repository with faces enabled (a synthetic folder) and VAE-GAN training only: `dvc repro
    train_domain@vaegan-faces` runs domain@faces first, then the training; a second repro runs nothing; the
    stages of a domain that is not enabled do not exist."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from tests.repo_copy import commit, copy_repo

    work = copy_repo(tmp_path / "repo")
    faces = _faces_folder(tmp_path)
    data = yaml.safe_load((work / "params.yaml").read_text())
    data["domains"]["enabled"] = ["faces"]
    data["domains"]["faces"]["folder"] = str(faces)
    data["train_domains"]["kinds"] = ["vaegan"]
    data["train_domains"]["faces"]["vaegan"]["overrides"] = {
        "init_from": "vaegan-default", "steps": 2, "batch_size": 2, "val_batches": 1, "prior_fit_batches": 1}
    (work / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    commit(work, "faces on")
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = lambda *args: subprocess.run([dvc, *args], cwd=work, env=env, capture_output=True, text=True,  # noqa: E731
                                       timeout=900)

    stages = run("stage", "list", "--name-only").stdout.split()
    assert {"domain@faces", "train_domain@vaegan-faces"} <= set(stages), stages
    assert not [s for s in stages if "aerial" in s or "textures" in s or s.startswith("train_domain@gan")], stages
    done = run("repro", "train_domain@vaegan-faces")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert done.stdout.index("Running stage 'domain@faces'") < done.stdout.index(
        "Running stage 'train_domain@vaegan-faces'")
    assert (work / "data" / "domains" / "faces" / "_manifest.json").is_file()
    assert (work / "models" / "domains" / "vaegan-faces" / "model.json").is_file()
    again = run("repro", "train_domain@vaegan-faces")
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout
