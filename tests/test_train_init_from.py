"""init_from: a fresh run starts from a model file's weights (or a shipped model's), so training accumulates."""

from __future__ import annotations

import pytest
import torch

from gencomp.models import load_model
from gencomp.train.init_from import InitFromError, resolve_init_path, shipped_names
from gencomp.train.loop import train
from tests.test_train import TINY_GAN, TINY_VAEGAN, AstronautCrops

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny VAE-GAN and GAN, trained a few steps: the files later runs start from."""
    root = tmp_path_factory.mktemp("init")
    train("vaegan", data_dir=None, out_dir=root / "vaegan", overrides=TINY_VAEGAN, dataset=AstronautCrops(32),
          progress=False)
    train("gan", data_dir=None, out_dir=root / "gan", overrides=TINY_GAN, dataset=AstronautCrops(32), progress=False)
    return root


def _one_step(kind: str, base: dict) -> dict:
    # a learning rate of ~0 keeps the weights where init_from put them, so what the run exports is what it loaded
    lrs = {"vaegan": dict(lr=1e-30, lr_prior=1e-30, lr_d=1e-30), "gan": dict(lr_g=1e-30, lr_d=1e-30, lr_encoder=1e-30)}
    steps = {"vaegan": dict(steps=1, adv_start=5), "gan": dict(steps=1, encoder_steps=1)}
    return dict(base, **lrs[kind], **steps[kind], checkpoint_every=1, val_every=1000, warmup_steps=0)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6) for k in sa)


def test_a_vaegan_run_starts_from_the_file_it_names(trained, tmp_path):
    source = trained / "vaegan" / "model.pt"
    summary = train("vaegan", data_dir=None, out_dir=tmp_path / "next", overrides=dict(
        _one_step("vaegan", TINY_VAEGAN), init_from=str(source)), dataset=AstronautCrops(32), progress=False)
    done = summary["initialised_from"]
    assert done["path"] == str(source) and done["tensors_copied"] > 0 and done["tensors_initialised_fresh"] == {}
    assert done["share_of_weights"] == 1.0
    before, after = load_model(source), load_model(tmp_path / "next" / "model.pt")
    assert _same_weights(before.model, after.model) and _same_weights(before.prior, after.prior)
    fresh = train("vaegan", data_dir=None, out_dir=tmp_path / "fresh", overrides=_one_step("vaegan", TINY_VAEGAN),
                  dataset=AstronautCrops(32), progress=False)
    assert fresh["initialised_from"] is None
    assert not _same_weights(before.model, load_model(tmp_path / "fresh" / "model.pt").model)


def test_a_gan_run_starts_generator_average_and_encoder_from_the_file(trained, tmp_path):
    source = trained / "gan" / "model.pt"
    train("gan", data_dir=None, out_dir=tmp_path / "next", overrides=dict(_one_step("gan", TINY_GAN),
          init_from=str(source), ema_decay=0.999999), dataset=AstronautCrops(32), progress=False)
    before, after = load_model(source), load_model(tmp_path / "next" / "model.pt")
    assert _same_weights(before.encoder, after.encoder)
    # the EMA generator is exported: BatchNorm running statistics move with the live one's, weights do not
    weights = lambda m: {k: v for k, v in m.state_dict().items() if "running" not in k and "num_batches" not in k}  # noqa: E731
    assert all(torch.allclose(weights(before.generator)[k], weights(after.generator)[k], atol=1e-5)
               for k in weights(before.generator))


def test_a_changed_architecture_reuses_what_still_fits(trained, tmp_path):
    source = trained / "vaegan" / "model.pt"
    wider_latent = dict(_one_step("vaegan", TINY_VAEGAN), max_channels=32, channel_set=[32, 8, 2],
                        init_from=str(source))
    summary = train("vaegan", data_dir=None, out_dir=tmp_path / "c32", overrides=wider_latent,
                    dataset=AstronautCrops(32), progress=False)
    fresh = summary["initialised_from"]["tensors_initialised_fresh"]
    # the encoder body and most of the decoder fit; the latent's two ends and the prior do not
    assert "to_moments.weight" in fresh["model"] and "decoder.0.weight" in fresh["model"]
    assert set(fresh["prior"]) == {"mean", "log_scale"}
    before, after = load_model(source).model, load_model(tmp_path / "c32" / "model.pt").model
    assert torch.allclose(before.encoder[0].weight, after.encoder[0].weight, atol=1e-6)


def test_resuming_ignores_init_from(trained, tmp_path):
    out = tmp_path / "run"
    train("vaegan", data_dir=None, out_dir=out, overrides=dict(TINY_VAEGAN, steps=3, checkpoint_every=1),
          dataset=AstronautCrops(32), progress=False)
    summary = train("vaegan", data_dir=None, out_dir=out, overrides=dict(
        TINY_VAEGAN, steps=4, checkpoint_every=1, init_from=str(trained / "vaegan" / "model.pt")), resume=True,
        dataset=AstronautCrops(32), progress=False)
    assert summary["resumed_from_step"] == 3 and summary["initialised_from"] is None


def test_bad_init_from_is_refused_by_name(trained, tmp_path):
    with pytest.raises(InitFromError, match="a 'gan' model; this run trains a 'vaegan'"):
        train("vaegan", data_dir=None, out_dir=tmp_path / "a", overrides=dict(
            TINY_VAEGAN, init_from=str(trained / "gan" / "model.pt")), dataset=AstronautCrops(32), progress=False)
    with pytest.raises(InitFromError, match="vaegan-default"):
        train("vaegan", data_dir=None, out_dir=tmp_path / "b", overrides=dict(
            TINY_VAEGAN, init_from=str(tmp_path / "missing.pt")), dataset=AstronautCrops(32), progress=False)
    other = dict(TINY_VAEGAN, width=4, max_channels=4, channel_set=[4, 2], d_width=4,
                 init_from=str(trained / "vaegan" / "model.pt"))
    with pytest.raises(InitFromError, match="of this run's weights fit"):
        train("vaegan", data_dir=None, out_dir=tmp_path / "c", overrides=other, dataset=AstronautCrops(32),
              progress=False)


def test_shipped_models_are_found_by_name():
    assert {"gan-default", "vaegan-default"} <= set(shipped_names())
    assert resolve_init_path("vaegan-default").name == "vaegan-default.pt"
    assert load_model(resolve_init_path("vaegan-default")).kind == "vaegan"


@pytest.mark.parametrize("kind", ["gan", "vaegan"])
def test_the_finetune_preset_starts_from_the_shipped_model(kind, tmp_path):
    """What `dvc repro` trains: the shipped architecture, every one of its weights taken from the shipped file."""
    steps = {"gan": dict(steps=1, encoder_steps=1, batch_size=2), "vaegan": dict(steps=1, batch_size=2)}[kind]
    crop = 64 if kind == "gan" else 128
    summary = train(kind, data_dir=None, out_dir=tmp_path / kind, preset="finetune", overrides=steps,
                    dataset=AstronautCrops(crop, count=4), progress=False)
    done = summary["initialised_from"]
    assert done["path"].endswith(f"{kind}-default.pt") and done["share_of_weights"] == 1.0


@pytest.fixture(scope="module")
def hyperprior_file(tmp_path_factory):
    """A tiny VAE-GAN of another shape than any preset's: width 8, 8 latent channels, the hyperprior."""
    root = tmp_path_factory.mktemp("hp")
    train("vaegan", data_dir=None, out_dir=root, progress=False, dataset=AstronautCrops(32),
          overrides=dict(TINY_VAEGAN, max_channels=8, channel_set=[8, 2], entropy_model="hyperprior",
                         hyper_channels=8, rate_lambda=0.01, steps=2, val_every=1000))
    return root / "model.pt"


def test_architecture_init_takes_the_shape_of_the_model_it_starts_from(hyperprior_file, tmp_path):
    """What lets the demo's finetune preset follow whichever model ships: every weight fits."""
    summary = train("vaegan", data_dir=None, out_dir=tmp_path / "ft", preset="finetune", progress=False,
                    overrides=dict(init_from=str(hyperprior_file), steps=1, batch_size=2, crop=32),
                    dataset=AstronautCrops(32, count=4))
    cfg = summary["config"]
    assert (cfg["width"], cfg["max_channels"], cfg["channel_set"]) == (8, 8, [8, 2])
    assert (cfg["entropy_model"], cfg["hyper_channels"]) == ("hyperprior", 8)
    assert summary["initialised_from"]["share_of_weights"] == 1.0
    assert load_model(tmp_path / "ft" / "model.pt").config["model"]["entropy_model"] == "hyperprior"


def test_settings_given_explicitly_win_over_the_init_models_shape(hyperprior_file, tmp_path):
    summary = train("vaegan", data_dir=None, out_dir=tmp_path / "ft", preset="finetune", progress=False,
                    overrides=dict(init_from=str(hyperprior_file), entropy_model="channel", steps=1,
                                   batch_size=2, crop=32),
                    dataset=AstronautCrops(32, count=4))
    assert summary["config"]["entropy_model"] == "channel" and summary["config"]["width"] == 8
    # the autoencoder came from the file, the channel prior (which the file lacks) starts fresh
    assert 0.5 < summary["initialised_from"]["share_of_weights"] < 1.0
    assert list(summary["initialised_from"]["tensors_initialised_fresh"]) == ["prior"]


def test_architecture_preset_keeps_the_tables_shape(hyperprior_file, tmp_path):
    """cpu-full's width 64 does not fit a width-8 file: refused, as a mismatched init_from always was."""
    with pytest.raises(InitFromError, match="architectures differ"):
        train("vaegan", data_dir=None, out_dir=tmp_path / "full", preset="cpu-full", progress=False,
              overrides=dict(init_from=str(hyperprior_file), steps=1, batch_size=2, crop=32),
              dataset=AstronautCrops(32, count=4))


def test_a_gan_finetune_takes_the_generators_shape(trained, tmp_path):
    summary = train("gan", data_dir=None, out_dir=tmp_path / "ft", preset="finetune", progress=False,
                    overrides=dict(init_from=str(trained / "gan" / "model.pt"), steps=1, encoder_steps=1,
                                   batch_size=2),
                    dataset=AstronautCrops(32, count=4))
    cfg = summary["config"]
    assert (cfg["tile"], cfg["g_width"], cfg["e_width"]) == (32, 4, 4)
    assert summary["initialised_from"]["share_of_weights"] > 0.5  # the discriminator starts fresh
