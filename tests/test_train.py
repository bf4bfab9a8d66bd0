"""The training loop end to end on tiny models and a synthetic dataset: outputs, presets, prior fitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import IterableDataset

from gencomp.models import load_model
from gencomp.train.checkpoint import load_checkpoint
from gencomp.train.loop import train
from gencomp.train.presets import PRESETS, resolve_preset

torch.set_num_threads(1)


class AstronautCrops(IterableDataset):
    """Random crops of skimage's astronaut photo, deterministic given (seed, epoch) like the shard loader."""

    def __init__(self, crop: int = 32, count: int = 24, seed: int = 0, delay_s: float = 0.0):
        from skimage import data

        self.image = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1).float() / 255
        self.crop, self.count, self.seed, self.delay_s = crop, count, seed, delay_s
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        import time

        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        side = self.image.shape[1] - self.crop
        for _ in range(self.count):
            if self.delay_s:
                time.sleep(self.delay_s)
            y, x = torch.randint(0, side, (2,), generator=g).tolist()
            yield self.image[:, y:y + self.crop, x:x + self.crop].clone()


TINY_GAN = dict(steps=4, encoder_steps=3, batch_size=4, tile=32, g_width=4, d_width=4, e_width=4,
                checkpoint_every=3, val_every=2, log_every=2, val_batches=1)
TINY_VAEGAN = dict(steps=5, batch_size=4, crop=32, width=8, d_width=4, adv_start=2, prior_fit_batches=2,
                   checkpoint_every=3, val_every=2, log_every=2, val_batches=1, channel_set=[28, 8, 2])


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_preset_resolves():
    for kind, table in PRESETS.items():
        for name in table:
            cfg = resolve_preset(kind, name)
            assert cfg["steps"] > 0


def test_resolve_preset_rejects_unknown_and_mistyped_settings():
    with pytest.raises(ValueError, match="valid keys: .*batch_size"):
        resolve_preset("vaegan", "demo", {"batchsize": 3})
    with pytest.raises(ValueError, match="must be an integer"):
        resolve_preset("gan", "demo", {"steps": "ten"})
    with pytest.raises(ValueError, match="valid presets"):
        resolve_preset("gan", "huge")
    with pytest.raises(ValueError, match="divisible"):
        resolve_preset("vaegan", "demo", {"crop": 40})
    with pytest.raises(ValueError, match="one of"):
        resolve_preset("vaegan", "demo", {"recon_loss": "l3"})
    with pytest.raises(ValueError, match="one of"):
        resolve_preset("vaegan", "demo", {"upsample": "bilinear"})
    with pytest.raises(ValueError, match="must be a number"):
        resolve_preset("vaegan", "demo", {"lr": "fast"})
    with pytest.raises(ValueError, match=r"channel_weights .* \(one per channel_set entry"):
        resolve_preset("vaegan", "demo", {"channel_weights": [1, 1]})  # channel_set has five entries
    with pytest.raises(ValueError, match="channel_weights"):
        resolve_preset("vaegan", "demo", {"channel_weights": [0, 0, 0, 0, 0]})
    with pytest.raises(ValueError, match="channel_weights"):
        resolve_preset("vaegan", "demo", {"channel_weights": [1, -1, 1, 1, 1]})
    cfg = resolve_preset("vaegan", "demo", {"kl_weight": 0})
    assert cfg["kl_weight"] == 0.0 and isinstance(cfg["kl_weight"], float)
    # PyYAML reads "3e-4" (no dot) as a string; a float setting takes it as the number it spells
    assert resolve_preset("vaegan", "demo", {"lr": "3e-4"})["lr"] == 3e-4
    assert PRESETS["vaegan"]["demo"]["kl_weight"] != 0  # resolving returns a copy


def test_train_gan_writes_checkpoint_model_and_logs(tmp_path):
    out = tmp_path / "gan"
    torch.set_num_threads(2)
    try:
        summary = train("gan", data_dir=None, out_dir=out, overrides=TINY_GAN, dataset=AstronautCrops(32),
                        val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
        assert torch.get_num_threads() == 2  # the preset's threads=1 applied only inside train()
    finally:
        torch.set_num_threads(1)
    assert summary["step"] == 7 and summary["samples_consumed"] == 28
    assert json.loads((out / "train_summary.json").read_text())["fingerprint"] == summary["fingerprint"]
    assert set(summary["val"]) == {"inversion_psnr", "inversion_ssim", "sample_diversity"}
    assert 0 <= summary["val"]["sample_diversity"] <= 2  # per-pixel std of tanh outputs across samples

    rows = _lines(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 8))
    assert [r["phase"] for r in rows] == ["gan"] * 4 + ["encoder"] * 3
    assert all(np.isfinite(r["loss_g"]) for r in rows[:4]) and all(np.isfinite(r["loss_e"]) for r in rows[4:])

    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 7 and set(ckpt["models"]) == {"generator", "discriminator", "encoder", "generator_ema"}
    loaded = load_model(out / "model.pt")
    assert loaded.kind == "gan" and loaded.fingerprint == summary["fingerprint"]
    # the stored generator is the EMA copy, not the raw one
    torch.testing.assert_close(loaded.generator.state_dict()["project.weight"],
                               ckpt["models"]["generator_ema"]["project.weight"])
    assert (out / "dvclive" / "plots" / "images" / "samples.png").is_file()
    assert (out / "dvclive" / "plots" / "metrics" / "train" / "loss_d.tsv").is_file()
    assert not list(out.glob("*.tmp"))


def test_train_vaegan_poster_style_fits_prior(tmp_path):
    out = tmp_path / "vaegan"
    summary = train("vaegan", data_dir=None, out_dir=out, overrides=dict(TINY_VAEGAN, quant_step=0.5),
                    dataset=AstronautCrops(32), val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    assert summary["prior_fitted"] and summary["quant_step"] == 0.5
    assert {"psnr_c28", "ssim_c8", "bpp_c2"} <= set(summary["val"])
    assert summary["val"]["bpp_c28"] > summary["val"]["bpp_c2"]
    loaded = load_model(out / "model.pt")
    assert loaded.config["quant_step"] == 0.5 and loaded.config["prior"]["fitted"] is True
    mean, scale = loaded.prior.channel_params()
    assert not np.allclose(scale, 1.0)  # fitted, not the initial N(0, 1)
    # the fitted prior matches the encoder's statistics on the training data
    batch = torch.stack(list(AstronautCrops(32, count=8)))
    with torch.no_grad():
        symbols = loaded.model.encode(batch) / 0.5
    np.testing.assert_allclose(mean, symbols.mean(dim=(0, 2, 3)).numpy(), atol=1e-4)
    rows = _lines(out / "metrics.jsonl")
    assert {r["channels"] for r in rows} <= {28, 8, 2}
    assert all("loss_adv" in r for r in rows if r["step"] > 2)


def test_train_vaegan_rate_aware_learns_prior(tmp_path):
    out = tmp_path / "vaegan_rate"
    summary = train("vaegan", data_dir=None, out_dir=out, overrides=dict(TINY_VAEGAN, rate_lambda=0.05),
                    dataset=AstronautCrops(32), progress=False)
    assert summary["rate_aware"] and summary["quant_step"] == 1.0 and not summary["prior_fitted"]
    rows = _lines(out / "metrics.jsonl")
    assert all(r["bpp"] > 0 for r in rows)
    loaded = load_model(out / "model.pt")
    assert loaded.config["quant_step"] == 1.0 and loaded.config["prior"]["fitted"] is False
    mean, _ = loaded.prior.channel_params()
    assert np.any(mean != 0)  # the prior's own optimiser moved it
    assert "val_note" not in summary and summary["val"] == {}  # no val data injected: no val metrics


def test_channel_weights_decide_which_channel_counts_the_steps_train(tmp_path):
    # in channel_set's order as written ([8, 28, 2]), not the recipe's sorted one: only 2 and 28 may be drawn
    overrides = dict(TINY_VAEGAN, steps=12, rate_lambda=0.05, channel_set=[8, 28, 2], channel_weights=[0, 3, 1])
    train("vaegan", data_dir=None, out_dir=tmp_path / "weighted", overrides=overrides, dataset=AstronautCrops(32),
          progress=False)
    drawn = {r["channels"] for r in _lines(tmp_path / "weighted" / "metrics.jsonl")}
    assert drawn <= {28, 2} and 28 in drawn


def test_resume_refuses_a_different_experiment(tmp_path):
    out = tmp_path / "gan"
    train("gan", data_dir=None, out_dir=out, overrides=TINY_GAN, dataset=AstronautCrops(32), progress=False)
    with pytest.raises(ValueError, match="g_width"):
        train("gan", data_dir=None, out_dir=out, overrides=dict(TINY_GAN, g_width=8), resume=True,
              dataset=AstronautCrops(32), progress=False)
    with pytest.raises(ValueError, match="not 'vaegan'"):
        train("vaegan", data_dir=None, out_dir=out, overrides=TINY_VAEGAN, resume=True,
              dataset=AstronautCrops(32), progress=False)


def test_too_small_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="no full batch"):
        train("vaegan", data_dir=None, out_dir=tmp_path, overrides=TINY_VAEGAN,
              dataset=AstronautCrops(32, count=2), progress=False)


def test_train_needs_data(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        train("gan", data_dir=None, out_dir=tmp_path, overrides=TINY_GAN, progress=False)


def test_train_reads_the_shard_loader(tmp_path):
    """The default data path: ShardDataset over a shards folder (train split for training, val for metrics)."""
    import hashlib

    import pandas as pd
    from PIL import Image

    from gencomp.data.shards import write_shards

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rows = []
    photo = AstronautCrops(crop=96, count=20)
    for k, crop in enumerate(photo):
        path = imgs / f"{k:02d}.png"
        Image.fromarray((crop.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append(dict(path=path.name, sha256=sha, keep=True, status="ok", cluster_key=sha, width=96,
                         height=96, format="PNG", url=""))
    pd.DataFrame(rows).to_parquet(tmp_path / "clusters.parquet")
    write_shards(tmp_path / "clusters.parquet", imgs, tmp_path / "shards",
                 split_fractions={"train": 0.7, "val": 0.3})
    summary = train("vaegan", data_dir=tmp_path / "shards", out_dir=tmp_path / "out",
                    overrides=dict(TINY_VAEGAN, batch_size=2, downscale_to=64), progress=False)
    assert summary["step"] == 5 and "val_note" not in summary
    assert summary["val"]["psnr_c28"] > 0
    assert load_model(tmp_path / "out" / "model.pt").config["prior"]["fitted"] is True



@pytest.mark.parametrize("kind", ["gan", "vaegan"])
def test_max_time_stops_cleanly_and_resume_finishes_the_run(tmp_path, kind):
    """A wall-clock limit (a scheduler's) ends the run after the step in progress with everything written;
    --resume then runs the remaining steps."""
    tiny = TINY_GAN if kind == "gan" else TINY_VAEGAN
    out = tmp_path / kind
    data = dict(dataset=AstronautCrops(32), val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    first = train(kind, data_dir=None, out_dir=out, overrides=dict(tiny, max_time_s=1e-9), **data)
    assert first["stopped_early"] and first["step"] == 1
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 1
    assert load_model(out / "model.pt").fingerprint == first["fingerprint"]
    assert first["val"]  # validated at the stop, like at a normal end

    second = train(kind, data_dir=None, out_dir=out, overrides=tiny, resume=True, **data)
    total = tiny["steps"] + tiny.get("encoder_steps", 0)
    assert not second["stopped_early"] and second["resumed_from_step"] == 1 and second["step"] == total
    assert [r["step"] for r in _lines(out / "metrics.jsonl")] == list(range(1, total + 1))


def test_steady_throughput_leaves_out_the_warm_up_steps(tmp_path):
    from gencomp.train.loop import WARMUP_STEPS

    short = train("vaegan", data_dir=None, out_dir=tmp_path / "a", overrides=TINY_VAEGAN, dataset=AstronautCrops(32),
                  progress=False)
    assert short["steady_images_per_s"] is None and short["train_images_per_s"] > 0
    longer = train("vaegan", data_dir=None, out_dir=tmp_path / "b", dataset=AstronautCrops(32), progress=False,
                   overrides=dict(TINY_VAEGAN, steps=WARMUP_STEPS + 5, checkpoint_every=100, val_every=100))
    assert longer["steady_images_per_s"] > 0


def test_training_in_a_git_repo_without_dvc_leaves_the_repo_alone(tmp_path, monkeypatch):
    """dvclive would `dvc init` a git repository that is not a DVC project; `gencomp train` must not."""
    import subprocess

    project = tmp_path / "someone-elses-project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "README").write_text("mine\n")
    subprocess.run(["git", "-C", str(project), "add", "README"], check=True)
    subprocess.run(["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   check=True)
    monkeypatch.chdir(project)
    train("vaegan", data_dir=None, out_dir=project / "run", overrides=TINY_VAEGAN, dataset=AstronautCrops(32),
          progress=False)
    assert not (project / ".dvc").exists()
    status = subprocess.run(["git", "-C", str(project), "status", "--porcelain"], capture_output=True, text=True,
                            check=True).stdout
    assert status.strip() == "?? run/"  # the run's own folder, nothing staged, nothing else written
    assert (project / "run" / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").is_file()


def test_a_checkpoint_older_than_a_new_setting_still_resumes(tmp_path):
    """Checkpoints written before epochs_per_pass existed lack it; they resume when it keeps the old behaviour."""
    from gencomp.train.checkpoint import save_checkpoint

    out = tmp_path / "run"
    train("vaegan", data_dir=None, out_dir=out, overrides=dict(TINY_VAEGAN, steps=3), dataset=AstronautCrops(32),
          progress=False)
    state = load_checkpoint(out / "checkpoint.pt")
    del state["config"]["epochs_per_pass"]
    save_checkpoint(out / "checkpoint.pt", state)
    summary = train("vaegan", data_dir=None, out_dir=out, overrides=TINY_VAEGAN, resume=True,
                    dataset=AstronautCrops(32), progress=False)
    assert summary["resumed_from_step"] == 3 and summary["step"] == TINY_VAEGAN["steps"]
    with pytest.raises(ValueError, match="epochs_per_pass"):
        train("vaegan", data_dir=None, out_dir=out, overrides=dict(TINY_VAEGAN, epochs_per_pass=2), resume=True,
              dataset=AstronautCrops(32), progress=False)


def test_training_without_dvclive_keeps_every_record_but_dvclive_s(tmp_path, monkeypatch, capsys):
    # a bare GPU host may lack dvclive and its DVC dependencies: the run must go on and say so
    monkeypatch.setitem(__import__("sys").modules, "dvclive", None)
    out = tmp_path / "run"
    summary = train("vaegan", data_dir=None, out_dir=out, overrides={**TINY_VAEGAN, "steps": 2, "val_every": 2},
                    dataset=AstronautCrops(32), val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    assert summary["step"] == 2
    assert "dvclive is not importable" in capsys.readouterr().err
    assert (out / "samples.png").is_file() and not (out / "dvclive").exists()
    assert [r["step"] for r in _lines(out / "metrics.jsonl")] == [1, 2]
    assert _lines(out / "val.jsonl")


def test_an_encoder_only_gan_run_needs_a_generator_to_invert(tmp_path):
    with pytest.raises(ValueError, match="steps' must be >= 1"):
        resolve_preset("vaegan", "demo", {"steps": 0})
    with pytest.raises(ValueError, match="needs encoder_steps >= 1 and init_from"):
        resolve_preset("gan", "demo", {"steps": 0})
    with pytest.raises(ValueError, match="needs encoder_steps >= 1 and init_from"):
        resolve_preset("gan", "demo", {"steps": 0, "encoder_steps": 0, "init_from": "gan-default"})
    first = train("gan", data_dir=None, out_dir=tmp_path / "a", overrides=TINY_GAN, dataset=AstronautCrops(32),
                  val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    second = train("gan", data_dir=None, out_dir=tmp_path / "b",
                   overrides={**TINY_GAN, "steps": 0, "encoder_steps": 2, "init_from": first["model_path"]},
                   dataset=AstronautCrops(32), val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    assert [r["phase"] for r in _lines(tmp_path / "b" / "metrics.jsonl")] == ["encoder", "encoder"]
    # the generator is the file's, untouched; only the encoder trained
    a, b = load_model(tmp_path / "a" / "model.pt"), load_model(tmp_path / "b" / "model.pt")
    for (name, ta), tb in zip(a.generator.state_dict().items(), b.generator.state_dict().values()):
        torch.testing.assert_close(ta, tb, msg=name)
    assert not torch.equal(a.encoder.state_dict()["head.weight"], b.encoder.state_dict()["head.weight"])
    assert second["step"] == 2


def test_inversion_aware_gan_training_teaches_the_encoder_during_the_adversarial_steps(tmp_path):
    from gencomp.models.gan import latent_moment_loss

    standard = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))
    assert latent_moment_loss(standard) < 0.01
    assert latent_moment_loss(standard * 3 + 1) > 10  # var 9, mean 1: (9 - 1)^2 + 1 per coordinate
    with pytest.raises(ValueError, match="recon_weight"):
        resolve_preset("gan", "demo", {"recon_weight": -1.0})

    overrides = {**TINY_GAN, "encoder_steps": 0, "val_every": 1000}
    plain = train("gan", data_dir=None, out_dir=tmp_path / "plain", overrides=overrides,
                  dataset=AstronautCrops(32), progress=False)
    joint = train("gan", data_dir=None, out_dir=tmp_path / "joint", overrides={**overrides, "recon_weight": 1.0},
                  dataset=AstronautCrops(32), progress=False)
    assert plain["step"] == joint["step"] == TINY_GAN["steps"]
    rows = _lines(tmp_path / "joint" / "metrics.jsonl")
    assert all(np.isfinite(r["recon_mse"]) and np.isfinite(r["latent_moments"]) for r in rows)
    assert "recon_mse" not in _lines(tmp_path / "plain" / "metrics.jsonl")[0]
    # the same seed and no encoder phase: the plain run's encoder is its initialisation, the joint run's has moved
    e_plain = load_model(tmp_path / "plain" / "model.pt").encoder.state_dict()
    e_joint = load_model(tmp_path / "joint" / "model.pt").encoder.state_dict()
    assert not torch.allclose(e_plain["head.weight"], e_joint["head.weight"])
