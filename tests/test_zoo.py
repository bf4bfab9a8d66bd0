"""The model zoo: its table against a temporary assets folder, the one resolver (codec settings, init_from,
decoding without --model), the model's training domain in evaluation results, and `gencomp models`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gencomp import cli
from gencomp.cli import app
from gencomp.codecs import decode_file, get_codec
from gencomp.models import zoo
from gencomp.models.store import load_model, save_model
from gencomp.train.init_from import InitFromError, resolve_init_path

SHIPPED = zoo.ASSETS
runner = CliRunner()


def _retagged_copy(target, metadata) -> str:
    """The shipped VAE-GAN saved again with other metadata: the same weights under another fingerprint, as a
    domain model will be once it lands."""
    payload = torch.load(SHIPPED / "vaegan-default.pt", map_location="cpu", weights_only=True)
    return save_model(target, kind="vaegan", config=payload["config"], state_dict=payload["state_dict"],
                      metadata={**payload["metadata"], **metadata})


@pytest.fixture()
def assets(tmp_path, monkeypatch):
    """An assets folder holding vaegan-default (a copy) and vaegan-faces (landed with its sidecar)."""
    folder = tmp_path / "assets"
    folder.mkdir()
    shutil.copyfile(SHIPPED / "vaegan-default.pt", folder / "vaegan-default.pt")
    shutil.copyfile(SHIPPED / "vaegan-default.json", folder / "vaegan-default.json")
    fingerprint = _retagged_copy(folder / "vaegan-faces.pt", {"note": "faces"})
    sidecar = json.loads((SHIPPED / "vaegan-default.json").read_text())
    sidecar.update(fingerprint=fingerprint, bytes=(folder / "vaegan-faces.pt").stat().st_size, domain="faces",
                   terms="research use only (CelebA release agreement)",
                   data={"corpus": "CelebA-128", "shards_manifest_sha256": "ab" * 32, "split_counts": {"test": 9}},
                   validation={"psnr_c8": 25.0, "ssim_c8": 0.7, "bpp_c8": 0.1, "psnr_c2": 21.0})
    (folder / "vaegan-faces.json").write_text(json.dumps(sidecar))
    monkeypatch.setattr(zoo, "ASSETS", folder)
    monkeypatch.chdir(tmp_path)  # no models/<kind>/model.pt here
    monkeypatch.delenv("GENCOMP_VAEGAN_MODEL", raising=False)
    monkeypatch.delenv("GENCOMP_GAN_MODEL", raising=False)
    return folder


def test_the_table_reads_each_sidecar_and_lists_what_has_not_landed(assets):
    listed = {m.name: m for m in zoo.models()}
    assert list(listed) == zoo.names()  # table order, installed or not
    faces = listed["vaegan-faces"]
    assert faces.installed and faces.domain == "faces" and faces.terms.startswith("research use only")
    assert faces.data_sha256 == "ab" * 32 and faces.size_bytes == (assets / "vaegan-faces.pt").stat().st_size
    assert faces.headline == {"channels": 8.0, "psnr": 25.0, "ssim": 0.7, "bpp": 0.1}  # the largest channel count
    default = listed["vaegan-default"]
    assert default.domain == "photos" and "mixed licences" in default.terms  # the table fills what the sidecar lacks
    assert default.data_sha256 == json.loads((SHIPPED / "vaegan-default.json").read_text())["data"][
        "shards_manifest_sha256"]
    assert not listed["gan-faces"].installed and not listed["gan-default"].installed
    assert listed["gan-faces"].terms.startswith("research use only") and listed["gan-faces"].research_only
    assert zoo.installed_names() == ["vaegan-default", "vaegan-faces"]
    assert all(not m.problems for m in listed.values())


def test_a_sidecar_that_disagrees_with_its_file_is_reported(assets):
    sidecar = json.loads((assets / "vaegan-faces.json").read_text())
    (assets / "vaegan-faces.json").write_text(json.dumps({**sidecar, "bytes": 12, "kind": "gan"}))
    problems = zoo.describe("vaegan-faces").problems
    assert any("kind 'gan'" in p for p in problems) and any("12 bytes" in p for p in problems)
    (assets / "vaegan-faces.json").write_text("{not json")
    assert "unreadable sidecar" in zoo.describe("vaegan-faces").problems[0]
    assert zoo.describe("vaegan-faces").domain == "faces"  # the table's domain still holds


def test_one_resolver_for_names_and_paths(assets, tmp_path):
    assert zoo.resolve_model("vaegan-faces") == assets / "vaegan-faces.pt"
    own = tmp_path / "mine.pt"
    shutil.copyfile(assets / "vaegan-faces.pt", own)
    assert zoo.resolve_model(str(own)) == own
    with pytest.raises(zoo.ModelNotFound, match="not installed.*gan-faces.pt is missing"):
        zoo.resolve_model("gan-faces")
    with pytest.raises(zoo.ModelNotFound, match=r"'vaegan-faces' is a 'vaegan' model of the zoo; this needs a 'gan'"):
        zoo.resolve_model("vaegan-faces", kind="gan")
    with pytest.raises(zoo.ModelNotFound, match="neither a model file nor a model of the zoo.*installed: "
                                                "vaegan-default, vaegan-faces; not installed yet: gan-default"):
        zoo.resolve_model("vaegan-facez")
    # init_from goes through the same resolver
    assert resolve_init_path("vaegan-faces") == assets / "vaegan-faces.pt"
    with pytest.raises(InitFromError, match="init_from 'nothing-here'.*vaegan-faces"):
        resolve_init_path("nothing-here")
    with pytest.raises(InitFromError, match="needs a 'gan' model"):
        resolve_init_path("vaegan-faces", "gan")


def test_codecs_take_zoo_names_and_refuse_unusable_ones_with_their_settings(assets):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    codec = get_codec("vaegan-c8", model="vaegan-faces")
    assert codec.model_path == assets / "vaegan-faces.pt"
    data = codec.encode(image)
    assert decode_file(data).size == (64, 64)  # no --model: the zoo model whose sidecar fingerprint matches
    with pytest.raises(ValueError, match="not installed"):
        get_codec("gan-inversion", model="gan-faces")
    with pytest.raises(ValueError, match="this needs a 'gan' model"):
        get_codec("gan-inversion", model="vaegan-faces")
    from gencomp.codecs.base import default_model_path

    assert default_model_path("vaegan") == assets / "vaegan-default.pt"  # the default is the zoo's too


def test_model_domain_of_zoo_models_copies_sidecars_and_bare_files(assets, tmp_path):
    faces = load_model(assets / "vaegan-faces.pt")
    assert zoo.model_domain(faces.path, faces.fingerprint) == "faces"
    copy = tmp_path / "copy-of-faces.pt"
    shutil.copyfile(faces.path, copy)  # same weights elsewhere: found by fingerprint
    assert zoo.model_domain(copy, faces.fingerprint) == "faces"
    assert zoo.model_name(str(copy), copy, faces.fingerprint) == "vaegan-faces"
    bare = tmp_path / "bare.pt"
    fingerprint = _retagged_copy(bare, {"note": "my own run"})
    assert zoo.model_domain(bare, fingerprint) == "unknown"
    assert zoo.model_name(str(bare), bare, fingerprint) == str(bare)
    assert zoo.model_domain(bare, fingerprint, {"domain": "textures"}) == "textures"  # the file's metadata
    (tmp_path / "bare.json").write_text(json.dumps({"domain": "aerial", "fingerprint": fingerprint}))
    assert zoo.model_domain(bare, fingerprint) == "aerial"  # a sidecar beside it
    (tmp_path / "bare.json").write_text(json.dumps({"domain": "aerial", "fingerprint": "0" * 16}))
    assert zoo.model_domain(bare, fingerprint) == "unknown"  # a sidecar of other weights says nothing


def test_results_name_the_model_and_its_training_domain(assets, tmp_path):
    from gencomp.evaluate import expand_grid, run_grid

    bare = tmp_path / "bare.pt"
    _retagged_copy(bare, {"note": "my own run"})
    cells = expand_grid([
        {"codec": "vaegan", "settings": {"model": "vaegan-faces", "channels": 2}, "label": "faces model"},
        {"codec": "vaegan", "settings": {"channels": 2}, "label": "default model"},
        {"codec": "vaegan", "settings": {"model": str(bare), "channels": 2}, "label": "bare file"},
        {"codec": "jpeg", "settings": {"quality": 1}, "label": "JPEG (1%)"},
    ])  # fmt: skip
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    frame = run_grid(cells, {"faces": [("a", "sha-a", image)]}, cache_dir=tmp_path / "cache", workers=1)
    got = {r.label: (r.dataset, r.model, r.model_domain) for r in frame.itertuples()}
    assert got == {"faces model": ("faces", "vaegan-faces", "faces"),
                   "default model": ("faces", "vaegan-default", "photos"),
                   "bare file": ("faces", str(bare), "unknown"),
                   "JPEG (1%)": ("faces", "", "")}  # fmt: skip
    assert frame["error"].isna().all()


def test_gencomp_models_lists_the_zoo(assets, monkeypatch):
    # the console's width is fixed when gencomp.cli is imported if COLUMNS is set then (pytest-xdist sets 80)
    monkeypatch.setattr(cli.console, "width", 200)
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in zoo.names():
        assert name in result.output
    assert "not installed" in result.output and "research use only" in result.output
    assert "PSNR 25.00 dB" in result.output and "abababababab" in result.output


def test_gencomp_models_json(assets):
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    listed = {m["name"]: m for m in json.loads(result.output)}
    assert list(listed) == zoo.names()
    assert listed["vaegan-faces"]["installed"] and listed["vaegan-faces"]["domain"] == "faces"
    assert listed["vaegan-faces"]["data_sha256"] == "ab" * 32 and listed["vaegan-faces"]["research_only"]
    assert listed["vaegan-faces"]["bytes"] == (assets / "vaegan-faces.pt").stat().st_size
    assert listed["gan-faces"]["installed"] is False and listed["gan-faces"]["bytes"] is None
    assert listed["vaegan-default"]["headline"]["channels"] == 28


def test_the_shipped_zoo_as_it_is():
    listed = {m.name: m for m in zoo.models()}
    for name in ("gan-default", "vaegan-default"):
        assert listed[name].installed and listed[name].domain == "photos" and not listed[name].problems
        assert listed[name].fingerprint == load_model(listed[name].file).fingerprint
    for name in ("gan-faces", "vaegan-faces"):
        assert listed[name].terms.startswith("research use only") and "CelebA" in listed[name].terms


def test_cli_refuses_an_unknown_model_name_listing_the_zoo(assets, tmp_path):
    Image.new("RGB", (32, 32), "gray").save(tmp_path / "in.png")
    result = runner.invoke(app, ["compress", "in.png", "-o", "in.gcz", "--codec", "vaegan-c8", "--model", "nope"])
    assert result.exit_code == 2
    assert "neither a model file nor a model of the zoo" in result.output and "vaegan-faces" in result.output
    result = runner.invoke(app, ["compress", "in.png", "-o", "in.gcz", "--codec", "gan-inversion",
                                 "--model", "gan-faces"])
    assert result.exit_code == 2 and "not installed" in result.output
    result = runner.invoke(app, ["train", "gan", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                                 "--init-from", "vaegan-faces"])
    assert result.exit_code == 2 and "needs a 'gan' model" in result.output
    assert not (tmp_path / "run").exists()


def test_a_grid_naming_a_zoo_model_not_installed_is_refused_by_its_key(assets, tmp_path):
    from gencomp.config import ParamsError, load_grid

    grid = tmp_path / "grid.yaml"
    grid.write_text("- {codec: vaegan, settings: {model: vaegan-faces, channels: 8}}\n"
                    "- {codec: gan-inversion, settings: {model: gan-faces, bits: 8}}\n")
    with pytest.raises(ParamsError, match=r"grid\[1\].*'gan-faces' is in the zoo but not installed"):
        load_grid(grid)
