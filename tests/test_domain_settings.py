"""params.yaml's domains and train_domains sections: one schema (gencomp/config.py) mirroring DomainSpec, the
repository's entries reproducing the lead's shard sets, and every bad value refused naming its key."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from gencomp.config import DomainParams, ParamsError, load_params
from gencomp.data.domains import DomainSpec
from tests.conftest import REPO

FACES_TERMS = "CelebA release agreement: non-commercial research use only, no redistribution"
AERIAL_TERMS = "AID: academic use only; imagery from Google Earth"


def _repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _load(tmp_path, data):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_params(path)


def _refused(tmp_path, data, key: str, message: str = "") -> str:
    with pytest.raises(ParamsError) as info:
        _load(tmp_path, data)
    text = str(info.value)
    assert f"  {key}: " in text, text
    assert message in text, text
    return text


def test_domains_are_off_by_default_and_never_read(tmp_path):
    """A fresh clone's params build no domain, so their folders (absent on a user's machine) are never needed."""
    data = _repo_params()
    p = load_params(REPO / "params.yaml")
    assert p.domains.enabled == []
    for name in ("faces", "aerial", "textures"):
        data["domains"][name]["folder"] = str(tmp_path / "nowhere" / name)
    assert _load(tmp_path, data).domains.enabled == []


def test_the_repository_entries_are_the_specs_the_shipped_shards_were_built_with():
    """The shard manifests compare the spec record: these must stay the lead's specs (issue 15)."""
    entries = load_params(REPO / "params.yaml").domains.entries
    built = {
        "faces": DomainSpec("faces", "x", crop_box=(0, 20, 178, 198), size=128, group_by="parent",
                            terms=FACES_TERMS),
        "aerial": DomainSpec("aerial", "x", center_crop=128, terms=AERIAL_TERMS),
        "textures": DomainSpec("textures", "x", center_crop=0, size=128, quality=90, terms="DTD: research use only"),
    }
    for name, spec in built.items():
        assert entries[name].spec(name).record() == spec.record(), name
        assert entries[name].folder == f"../shared/data/domains/{name}"
        assert entries[name].side == 128


def test_schema_defaults_are_domainspecs():
    """One default per setting: the schema's, equal to the library's DomainSpec (which the stage builds)."""
    spec_fields = {f.name: f for f in dataclasses.fields(DomainSpec)}
    assert set(DomainParams.model_fields) == set(spec_fields) - {"name"}
    for name, info in DomainParams.model_fields.items():
        if info.is_required():
            assert spec_fields[name].default is dataclasses.MISSING, name
            continue
        spec_default = spec_fields[name].default
        if spec_default is dataclasses.MISSING:
            spec_default = spec_fields[name].default_factory()
        assert info.default == spec_default, name


@pytest.mark.parametrize("change, key, message", [
    ({"quality": 101}, "domains.faces.quality", "less than or equal to 100"),
    ({"crop_box": [0, 20, 178]}, "domains.faces.crop_box", "at least 4"),
    ({"crop_box": [178, 20, 0, 198]}, "domains.faces", "left < right"),
    ({"center_crop": 64}, "domains.faces", "not both"),
    ({"group_by": "person"}, "domains.faces.group_by", "'parent' or 'file'"),
    ({"size": 4}, "domains.faces.size", "greater than or equal to 8"),
    ({"split": {"train": 0.9, "test": 0.1}}, "domains.faces.split", "train, val and test"),
    ({"foldr": "x"}, "domains.faces.foldr", "Extra inputs"),
])
def test_a_bad_domain_setting_is_named(tmp_path, change, key, message):
    data = _repo_params()
    data["domains"]["faces"].update(change)
    _refused(tmp_path, data, key, message)


def test_enabled_must_name_domains_once(tmp_path):
    data = _repo_params()
    data["domains"]["enabled"] = ["faces", "facse"]
    _refused(tmp_path, data, "domains.enabled[1]", "no domain 'facse'")
    data["domains"]["enabled"] = ["faces", "faces"]
    _refused(tmp_path, data, "domains.enabled[1]", "listed twice")
    data = _repo_params()
    data["domains"]["clouds"] = "a folder"
    _refused(tmp_path, data, "domains.clouds", "valid dictionary")


def test_domain_training_sets_tile_and_crop_from_the_domains_side(tmp_path):
    data = _repo_params()
    data["domains"]["enabled"] = ["faces", "aerial"]
    p = _load(tmp_path, data)
    assert p.domain_training("gan", "faces") == ("finetune", {"init_from": "gan-faces", "tile": 128})
    assert p.domain_training("vaegan", "aerial") == ("finetune", {"init_from": "vaegan-aerial", "crop": 128})
    assert str(p.train_domains.model_dir("gan", "faces")) == "models/domains/gan-faces"
    assert str(p.domains.shards_dir("aerial")) == "data/domains/aerial"


def test_bad_domain_training_settings_are_named(tmp_path):
    data = _repo_params()
    data["domains"]["enabled"] = ["faces"]
    data["train_domains"]["faces"]["gan"]["overrides"]["tile"] = 64
    _refused(tmp_path, data, "train_domains.faces.gan.overrides.tile", "the domain's side")

    data = _repo_params()
    data["domains"]["enabled"] = ["faces"]
    data["train_domains"]["faces"]["vaegan"]["preset"] = "fast"
    _refused(tmp_path, data, "train_domains.faces.vaegan.preset", "unknown vaegan preset 'fast'")

    data = _repo_params()
    data["domains"]["enabled"] = ["faces"]
    data["train_domains"]["faces"]["vaegan"]["overrides"]["stepz"] = 3
    _refused(tmp_path, data, "train_domains.faces.vaegan.overrides.stepz", "unknown vaegan training setting")

    data = _repo_params()
    data["domains"]["enabled"] = ["textures"]
    del data["train_domains"]["textures"]
    _refused(tmp_path, data, "train_domains.textures", "give its presets here")
    data["train_domains"]["kinds"] = []  # evaluation only: no training settings needed
    assert _load(tmp_path, data).domains.enabled == ["textures"]

    data = _repo_params()
    data["train_domains"]["clouds"] = {"gan": {"preset": "finetune"}}
    _refused(tmp_path, data, "train_domains.clouds", "no domain 'clouds'")


def test_a_trained_domain_needs_one_square_size(tmp_path):
    data = _repo_params()
    data["domains"]["enabled"] = ["aerial"]
    data["domains"]["aerial"] = {"folder": "x", "max_short_side": 256}
    _refused(tmp_path, data, "domains.aerial.size", "square images of one size")
    data["domains"]["aerial"] = {"folder": "x", "center_crop": 96}
    _refused(tmp_path, data, "domains.aerial.size", "power of two, got 96")
    data["train_domains"]["kinds"] = ["vaegan"]  # a VAE-GAN crop only has to be a multiple of its downsampling
    assert _load(tmp_path, data).domain_training("vaegan", "aerial")[1]["crop"] == 96


def test_an_evaluation_set_of_a_domain_needs_the_domain_enabled(tmp_path):
    data = _repo_params()
    data["evaluate"]["datasets"].append({"name": "faces", "shards": "data/domains/faces", "split": "test",
                                         "max_images": 5})
    _refused(tmp_path, data, "evaluate.datasets[1].shards", "add 'faces' there")
    data["domains"]["enabled"] = ["faces"]
    assert [d.name for d in _load(tmp_path, data).evaluate.datasets] == ["test", "faces"]


def test_each_evaluation_set_has_its_domain_for_the_report(tmp_path):
    data = _repo_params()
    data["domains"]["enabled"] = ["faces"]
    data["evaluate"]["datasets"] += [{"name": "celeb-test", "shards": "data/domains/faces", "split": "test"},
                                     {"name": "kodak", "dir": "../shared/data/kodak"}]
    assert _load(tmp_path, data).dataset_domains() == {"test": "photos", "celeb-test": "faces"}
