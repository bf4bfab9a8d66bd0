"""The mean-scale hyperprior entropy model of the VAE-GAN: model file, codec, cross-process bit-exactness,
refinement, hostile headers and training."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gencomp.codecs import decode_file, get_codec
from gencomp.codecs.container import CorruptPayload, MalformedHeader, unpack
from gencomp.models import VAEGAN, GaussianChannelPrior, ModelFileError, load_model, save_vaegan
from gencomp.models.hyperprior import (SCALE_LEVELS, SCALE_MAX, Hyperprior, log_scale_table, scale_indices,
                                       scale_table)
from gencomp.models.prior import SCALE_MIN
from tests.gcz_files import repack

torch.set_num_threads(1)
GOLDEN = Path(__file__).parent / "fixtures" / "golden"


def _photo(width: int = 72, height: int = 40) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 3 + 20 * np.sin(y / 3), y * 5 + 10 * np.cos(x / 4), (x + y) * 2], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")



def _hyper_model(path: Path, seed: int = 0, context: str = "none") -> Path:
    """A tiny hyperprior model; with a checkerboard ``context`` whose correction is not zero (a fresh one's is)."""
    torch.manual_seed(seed)
    model = VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=8, upsample="subpixel",
                   entropy_model="hyperprior")
    hyper = Hyperprior(latent_channels=4, channels=8, context=context)
    with torch.no_grad():  # a random encoder's latents are tiny: scale them so they span many symbols
        model.to_moments.weight.mul_(40.0)
        hyper.h_a[-1].weight.mul_(10.0)
        if hyper.checkerboard is not None:
            hyper.checkerboard.fuse[-1].weight.normal_(0.0, 0.01)
            hyper.checkerboard.fuse[-1].bias.normal_(0.0, 0.05)
    save_vaegan(path, model=model, prior=None, quant_step=1.0, prior_fitted=False, hyperprior=hyper)
    return path


@pytest.fixture(scope="module")
def hp_path(tmp_path_factory) -> Path:
    return _hyper_model(tmp_path_factory.mktemp("hp") / "hp.pt")


def test_scale_table_is_log_spaced_and_indices_round_up():
    table = scale_table()
    assert table.shape == (SCALE_LEVELS,)
    assert table[0] == pytest.approx(SCALE_MIN) and table[-1] == pytest.approx(SCALE_MAX)
    assert np.all(np.diff(table) > 0)
    logs = np.linspace(math.log(SCALE_MIN) - 1, math.log(SCALE_MAX) + 1, 5001)
    index = scale_indices(logs)
    inside = (logs > math.log(SCALE_MIN)) & (logs <= math.log(SCALE_MAX))
    scales, chosen = np.exp(logs[inside]), index[inside]
    assert np.all(table[chosen] >= scales * (1 - 1e-12))  # rounded up, never down ...
    above = chosen > 0
    assert np.all(table[chosen[above] - 1] < scales[above] * (1 + 1e-12))  # ... to the nearest table scale
    assert index[0] == 0 and index[-1] == SCALE_LEVELS - 1  # clipped at both ends
    assert scale_indices(log_scale_table()).tolist() == list(range(SCALE_LEVELS))  # a boundary maps to itself


def test_model_file_round_trip_and_old_files_are_channel_models(hp_path):
    loaded = load_model(hp_path)
    assert loaded.entropy_model == "hyperprior" and loaded.prior is None
    assert loaded.hyperprior.config == {"latent_channels": 4, "channels": 8}
    old = load_model(GOLDEN / "vaegan-tiny.pt")  # written before the option existed: no entropy_model key
    assert "entropy_model" not in old.config["model"]
    assert old.entropy_model == "channel" and old.prior is not None and old.hyperprior is None


@pytest.mark.parametrize("change, message", [
    (lambda cfg: cfg["hyperprior"].update(latent_channels=5), "latent_channels"),
    (lambda cfg: cfg["hyperprior"].update(channels=100_000), "hyperprior.channels"),
    (lambda cfg: cfg["model"].update(entropy_model="laplace"), "entropy_model"),
    (lambda cfg: cfg.pop("hyperprior"), "hyperprior"),
])
def test_model_file_config_is_checked(hp_path, tmp_path, change, message):
    state = torch.load(hp_path, weights_only=True)
    change(state["config"])
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "bad.pt")


def test_save_needs_the_matching_entropy_model(tmp_path):
    model = VAEGAN(max_channels=4, channel_set=(4,), width=8, downsample=8, entropy_model="hyperprior")
    with pytest.raises(ValueError, match="needs its hyperprior"):
        save_vaegan(tmp_path / "a.pt", model=model, prior=GaussianChannelPrior(4), quant_step=1.0, prior_fitted=False)
    with pytest.raises(ValueError, match="entropy_model must be one of"):
        VAEGAN(max_channels=4, channel_set=(4,), entropy_model="laplace")


@pytest.mark.parametrize("settings", [{"channels": 4}, {"channels": 2}, {"channels": 4, "quant_scale": 2.0},
                                      {"channels": 2, "quant_scale": 0.5}])
def test_codec_round_trip(hp_path, settings):
    image = _photo()
    codec = get_codec("vaegan", model=hp_path, refine_steps=0, **settings)
    data = codec.encode(image)
    header = unpack(data)
    assert header.params["s"] == 1 and 0 < header.params["z"] < len(header.payload)
    assert header.params["c"] == settings["channels"]
    assert ("q" in header.params) == ("quant_scale" in settings)
    decoded = decode_file(data, model=hp_path)
    assert decoded.size == image.size
    # the latent the decoder sees is mean + symbols * s, and the information content is what the payload holds
    latent, channels, _ = codec.latent_from_container(data)
    assert latent.shape == (settings["channels"], 5, 9) and channels == settings["channels"]
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]  # 72x40: no padding
    with torch.no_grad():
        mu = load_model(hp_path).model.encode(x)[0, : settings["channels"]].numpy()
    step = settings.get("quant_scale", 1.0)
    assert np.abs(latent - mu).max() <= 0.5 * step + 1e-4  # y_hat = mean + round((y - mean) / s) * s
    bits = codec.information_bits(data)
    assert 0 < bits <= 8 * len(header.payload)
    assert 8 * len(header.payload) - bits < 2 * 32 + 64  # two ANS streams: at most a word of padding each, + slack


def test_symbols_far_outside_the_predicted_scales_escape_and_round_trip(tmp_path):
    """An h_s that predicts the smallest scale everywhere: most residuals lie beyond 8 of its scales and are
    escaped; the file still decodes to the encoder's latent within half a step."""
    path = _hyper_model(tmp_path / "hp.pt")
    state = torch.load(path, weights_only=True)
    hyper = Hyperprior(4, 8)
    hyper.load_state_dict(state["state_dict"]["hyperprior"])
    with torch.no_grad():  # means 0, log-scales far below the table's smallest: the coder uses 0.11
        hyper.h_s[-1].weight.zero_()
        hyper.h_s[-1].bias.zero_()
        hyper.h_s[-1].bias[4:].fill_(-10.0)
    model = VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=8, upsample="subpixel",
                   entropy_model="hyperprior")
    model.load_state_dict(state["state_dict"]["model"])
    save_vaegan(tmp_path / "sharp.pt", model=model, prior=None, quant_step=1.0, prior_fitted=False, hyperprior=hyper)
    image = _photo()
    codec = get_codec("vaegan", model=tmp_path / "sharp.pt", channels=4, refine_steps=0)
    data = codec.encode(image)
    latent, _, _ = codec.latent_from_container(data)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]  # 72x40: no padding
    with torch.no_grad():
        mu = model.encode(x)[0, :4].numpy()
    assert np.abs(latent).max() > 2  # the coded range at scale 0.11 is [-2, 2]: these symbols were escaped
    assert np.allclose(latent, np.round(mu), atol=1e-6)  # means are 0: y_hat = round(y), nothing clipped
    assert decode_file(data, model=tmp_path / "sharp.pt").size == image.size


def test_refinement_works_with_hyperprior_models(hp_path):
    image = _photo()
    plain = get_codec("vaegan", model=hp_path, channels=4, refine_steps=0)
    refined = get_codec("vaegan", model=hp_path, channels=4, refine_steps=8, refine_lambda=0.006)
    data_plain, data_refined = plain.encode(image), refined.encode(image)
    assert unpack(data_refined).params["z"] == unpack(data_plain).params["z"]  # z is kept: the same z section
    assert unpack(data_refined).payload[: unpack(data_plain).params["z"]] == \
        unpack(data_plain).payload[: unpack(data_plain).params["z"]]
    target = np.asarray(image, dtype=np.float64) / 255

    def cost(codec, data):
        pixels = np.asarray(decode_file(data, model=hp_path), dtype=np.float64) / 255
        return ((pixels - target) ** 2).mean() + 0.006 * codec.information_bits(data) / (image.width * image.height)

    assert cost(refined, data_refined) <= cost(plain, data_plain) + 1e-3  # kept only when not worse (8-bit output)


def test_channel_files_are_refused_by_a_hyperprior_model_and_back(hp_path):
    image = _photo()
    data = get_codec("vaegan", model=hp_path, channels=4, refine_steps=0).encode(image)
    params = dict(unpack(data).params)
    with pytest.raises(MalformedHeader, match="per-channel prior"):
        decode_file(repack(data, params={k: v for k, v in params.items() if k != "z"} | {"s": 0}), model=hp_path)
    with pytest.raises(MalformedHeader):  # s = 1 needs the z section's length
        decode_file(repack(data, params={k: v for k, v in params.items() if k != "z"}), model=hp_path)
    channel_file = get_codec("vaegan", model=GOLDEN / "vaegan-tiny.pt", channels=4, refine_steps=0).encode(image)
    with pytest.raises(MalformedHeader, match="hyperprior"):
        decode_file(repack(channel_file, params={**unpack(channel_file).params, "s": 1, "z": 4}),
                    model=GOLDEN / "vaegan-tiny.pt")


def test_hostile_hyperprior_files_are_refused(hp_path):
    data = get_codec("vaegan", model=hp_path, channels=4, refine_steps=0).encode(_photo())
    c = unpack(data)
    z = c.params["z"]
    cases = {
        "z beyond the payload": repack(data, params={**c.params, "z": len(c.payload) + 4}),
        "z not in words": repack(data, params={**c.params, "z": z - 1}),
        "z zero": repack(data, params={**c.params, "z": 0}),
    }
    for bad in cases.values():
        with pytest.raises(MalformedHeader):
            decode_file(bad, model=hp_path)
    corrupt = {
        "4000x4000": repack(data, width=4000, height=4000),
        "z section cut": repack(data, payload=c.payload[: z - 4] + c.payload[z:], params={**c.params, "z": z - 4}),
        "word appended": repack(data, payload=c.payload + b"\x01\x00\x00\x00"),
        "y section cut": repack(data, payload=c.payload[:-4]),
        "z section grown": repack(data, payload=c.payload[:z] + b"\x01\x00\x00\x00" + c.payload[z:],
                                   params={**c.params, "z": z + 4}),
    }
    for bad in corrupt.values():
        with pytest.raises(CorruptPayload):
            decode_file(bad, model=hp_path)


def test_decoding_is_identical_in_another_process_with_other_threads(hp_path, tmp_path):
    """The scale indices come from float64 CPU arithmetic: another process (another thread count) decodes the
    very same symbols and pixels; it also re-derives the same y parameters from z."""
    assert_decoded_alike_in_another_process(hp_path, tmp_path)


def assert_decoded_alike_in_another_process(hp_path: Path, tmp_path: Path) -> None:
    """Files of ``hp_path`` at two settings decode to the same pixels here and in a 2-thread subprocess."""
    image = _photo(100, 70)
    files = {}
    for name, settings in {"c4": {"channels": 4}, "c2q": {"channels": 2, "quant_scale": 1.5}}.items():
        data = get_codec("vaegan", model=hp_path, refine_steps=0, **settings).encode(image)
        (tmp_path / f"{name}.gcz").write_bytes(data)
        files[name] = data
    here = {name: hashlib.sha256(np.asarray(decode_file(data, model=hp_path)).tobytes()).hexdigest()
            for name, data in files.items()}
    script = textwrap.dedent(
        f"""
        import hashlib
        import numpy as np, torch
        torch.set_num_threads(2)
        from gencomp.codecs import decode_file
        for name in ("c4", "c2q"):
            data = open({str(tmp_path)!r} + f"/{{name}}.gcz", "rb").read()
            print(name, hashlib.sha256(np.asarray(decode_file(data, model={str(hp_path)!r})).tobytes()).hexdigest())
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert dict(line.split() for line in result.stdout.strip().splitlines()) == here


def test_coding_params_ignore_the_model_device_and_dtype(hp_path):
    loaded = load_model(hp_path)
    z = np.random.default_rng(0).integers(-5, 6, size=(8, 2, 3))
    mean, index = loaded.hyperprior.coding_params(z, 5, 9, 4)
    assert mean.dtype == np.float64 and index.dtype == np.int64 and mean.shape == index.shape == (4, 5, 9)
    # the coding copy is float64 on the CPU, whatever the model: a float32 pass gives other (near) values
    with torch.no_grad():
        mean32, _ = loaded.hyperprior.synthesise(torch.from_numpy(z).float().unsqueeze(0), 5, 9)
    assert np.allclose(mean32[0].numpy(), mean, atol=1e-4)
    again_mean, again_index = loaded.hyperprior.coding_params(z, 5, 9, 4)
    assert np.array_equal(again_mean, mean) and np.array_equal(again_index, index)
    assert "_coding_h_s" not in "".join(loaded.hyperprior.state_dict())  # the float64 copy is not saved


def test_information_bits_of_a_channel_file_is_unchanged():
    """The channel prior's files report what the training validation always measured: their symbols' bits."""
    model = GOLDEN / "vaegan-tiny.pt"
    codec = get_codec("vaegan", model=model, channels=4, refine_steps=0)
    data = (GOLDEN / "vaegan-c4-entropy.gcz").read_bytes()
    latent, _, _ = codec.latent_from_container(data)
    loaded = load_model(model)
    symbols = torch.from_numpy(np.round(latent / loaded.quant_step)).unsqueeze(0)
    assert codec.information_bits(data) == pytest.approx(float(loaded.prior.bits(symbols)))


# -- training ---------------------------------------------------------------------------------------------------

def _tiny_hp(**changes) -> dict:
    from tests.test_train import TINY_VAEGAN

    return {**TINY_VAEGAN, "entropy_model": "hyperprior", "hyper_channels": 8, "rate_lambda": 0.05, **changes}


def test_training_a_hyperprior_model(tmp_path):
    import json

    from gencomp.train.loop import train
    from tests.test_train import AstronautCrops

    out = tmp_path / "hp"
    summary = train("vaegan", data_dir=None, out_dir=out, overrides=_tiny_hp(), dataset=AstronautCrops(32),
                    val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    assert summary["entropy_model"] == "hyperprior" and summary["rate_aware"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["bpp"] > r["bpp_z"] > 0 for r in rows)  # rate = bits(y | z) + bits(z), both counted
    assert summary["val"]["bpp_c8"] > 0 and summary["val"]["psnr_c2"] > 0  # validated through the codec
    loaded = load_model(out / "model.pt")
    assert loaded.entropy_model == "hyperprior" and loaded.hyperprior.channels == 8
    initial = Hyperprior(28, 8).z_prior.state_dict()
    assert not torch.equal(loaded.hyperprior.z_prior.mean, initial["mean"])  # z's density was trained
    data = get_codec("vaegan", model=out / "model.pt", channels=8, refine_steps=0).encode(_photo(64, 48))
    assert decode_file(data, model=out / "model.pt").size == (64, 48)


def test_hyperprior_needs_the_rate_term(tmp_path):
    from gencomp.train.loop import train
    from gencomp.train.presets import PresetError
    from tests.test_train import AstronautCrops

    with pytest.raises(PresetError, match="rate_lambda > 0"):
        train("vaegan", data_dir=None, out_dir=tmp_path, overrides=_tiny_hp(rate_lambda=0.0),
              dataset=AstronautCrops(32), progress=False)


def test_a_hyperprior_run_starts_from_a_channel_model(tmp_path):
    """init_from a channel-prior model: encoder and decoder copied, the hyperprior fresh and listed as such."""
    from gencomp.train.loop import train
    from tests.test_train import TINY_VAEGAN, AstronautCrops

    train("vaegan", data_dir=None, out_dir=tmp_path / "channel", overrides=dict(TINY_VAEGAN, rate_lambda=0.05),
          dataset=AstronautCrops(32), progress=False)
    source = tmp_path / "channel" / "model.pt"
    summary = train("vaegan", data_dir=None, out_dir=tmp_path / "hp", dataset=AstronautCrops(32), progress=False,
                    overrides=_tiny_hp(init_from=str(source), steps=1, lr=1e-30, lr_d=1e-30, lr_prior=1e-30,
                                       adv_start=5, checkpoint_every=1, val_every=1000, warmup_steps=0))
    done = summary["initialised_from"]
    assert "h_a.0.weight" in done["tensors_initialised_fresh"]["hyperprior"]
    assert "model" not in done["tensors_initialised_fresh"]
    channel, hp = load_model(source), load_model(tmp_path / "hp" / "model.pt")
    before, after = channel.model.state_dict(), hp.model.state_dict()
    assert all(torch.allclose(before[k].float(), after[k].float(), atol=1e-6) for k in before)
    # h_s starts out predicting the channel prior, whatever z is
    mean, log_scale = hp.hyperprior.synthesise(torch.randn(1, 8, 1, 1) * 5, 2, 2)
    assert torch.allclose(mean[0, :, 0, 0], channel.prior.mean, atol=1e-5)
    assert torch.allclose(log_scale[0, :, 0, 0].exp().clamp(min=SCALE_MIN), channel.prior.scale(), atol=1e-5)


def test_a_hyperprior_run_stops_and_resumes(tmp_path):
    """The hyperprior and its optimiser are in the checkpoint: a run stopped after one step resumes to the end."""
    from gencomp.train.checkpoint import load_checkpoint
    from gencomp.train.loop import train
    from tests.test_train import AstronautCrops

    out = tmp_path / "hp"
    data = dict(dataset=AstronautCrops(32), val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    first = train("vaegan", data_dir=None, out_dir=out, overrides=_tiny_hp(max_time_s=1e-9), **data)
    assert first["stopped_early"] and first["step"] == 1
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert "hyperprior" in checkpoint["models"] and "prior" in checkpoint["optimizers"]
    second = train("vaegan", data_dir=None, out_dir=out, overrides=_tiny_hp(), resume=True, **data)
    assert second["resumed_from_step"] == 1 and second["step"] == _tiny_hp()["steps"]
    assert load_model(out / "model.pt").entropy_model == "hyperprior"


def test_a_channel_run_starts_from_a_hyperprior_model(tmp_path):
    from gencomp.train.loop import train
    from tests.test_train import TINY_VAEGAN, AstronautCrops

    train("vaegan", data_dir=None, out_dir=tmp_path / "hp", overrides=_tiny_hp(steps=1), dataset=AstronautCrops(32),
          progress=False)
    summary = train("vaegan", data_dir=None, out_dir=tmp_path / "channel", dataset=AstronautCrops(32), progress=False,
                    overrides=dict(TINY_VAEGAN, rate_lambda=0.05, steps=1, init_from=str(tmp_path / "hp" / "model.pt")))
    assert summary["initialised_from"]["tensors_initialised_fresh"]["prior"] == ["log_scale", "mean"]
