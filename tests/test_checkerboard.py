"""The hyperprior's checkerboard context: model file, two-pass codec, refinement, hostile headers, cross-process
bit-exactness and training (entropy model alone, from a hyperprior model without a context)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gencomp.codecs import decode_file, get_codec
from gencomp.codecs.container import CorruptPayload, MalformedHeader, UnsupportedVersion, unpack
from gencomp.codecs import container
from gencomp.models import load_model
from gencomp.models.hyperprior import Hyperprior, anchor_mask
from tests.gcz_files import repack

torch.set_num_threads(1)


def _photo(width: int = 72, height: int = 40) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 3 + 20 * np.sin(y / 3), y * 5 + 10 * np.cos(x / 4), (x + y) * 2], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def cb_path(tmp_path_factory) -> Path:
    from tests.test_hyperprior import _hyper_model

    return _hyper_model(tmp_path_factory.mktemp("cb") / "cb.pt", context="checkerboard")


def test_anchor_mask_is_a_checkerboard():
    mask = anchor_mask(3, 4)
    assert mask.tolist() == [[True, False, True, False], [False, True, False, True], [True, False, True, False]]
    assert anchor_mask(1, 1).tolist() == [[True]]


def test_model_file_round_trip(cb_path, tmp_path):
    loaded = load_model(cb_path)
    assert loaded.hyperprior.context == "checkerboard" and loaded.config["hyperprior"]["context"] == "checkerboard"
    # a hyperprior without a context writes no key: its files stay what they were
    assert "context" not in Hyperprior(4, 8).config
    payload = torch.load(cb_path, weights_only=True)
    payload["config"]["hyperprior"]["context"] = "autoregressive"
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(Exception, match="context"):
        load_model(tmp_path / "bad.pt")


def test_a_fresh_context_predicts_what_h_s_does():
    hyper = Hyperprior(4, 8, context="checkerboard")
    out = torch.randn(1, 8, 5, 6)
    assert torch.equal(hyper.checkerboard(out, torch.randn(1, 4, 5, 6)), out)


@pytest.mark.parametrize("channels", [4, 2])
def test_the_coding_path_computes_what_the_module_does(cb_path, channels):
    """The coding path's matrix products over the non-anchors give the module's float64 forward there; the
    anchors keep h_s's output."""
    hyper = load_model(cb_path).hyperprior
    rng = np.random.default_rng(0)
    hyper_out = rng.normal(size=(8, 5, 7))
    anchors = rng.normal(size=(channels, 5, 7)) * 3
    got = hyper.coding_context_output(hyper_out, anchors)
    board = np.zeros((4, 5, 7))
    board[:channels] = np.where(anchor_mask(5, 7), anchors, 0.0)
    with torch.no_grad():
        module = hyper.coding_context()(torch.from_numpy(hyper_out)[None], torch.from_numpy(board)[None])[0].numpy()
    others = ~anchor_mask(5, 7)
    assert np.allclose(got[:, others], module[:, others], rtol=0, atol=1e-12)
    assert np.array_equal(got[:, ~others], hyper_out[:, ~others])
    assert np.abs(got[:, others] - hyper_out[:, others]).max() > 1e-3  # the context does correct them


@pytest.mark.parametrize("settings", [{"channels": 4}, {"channels": 2}, {"channels": 4, "quant_scale": 2.0}])
def test_codec_round_trip(cb_path, settings):
    image = _photo()
    codec = get_codec("vaegan", model=cb_path, refine_steps=0, **settings)
    data = codec.encode(image)
    header = unpack(data)
    assert header.version == 3  # readers without the context refuse it by name
    assert header.params["s"] == 2 and 0 < header.params["z"] and 0 < header.params["a"]
    assert header.params["z"] + header.params["a"] < len(header.payload)
    decoded = decode_file(data, model=cb_path)
    assert decoded.size == image.size
    latent, channels, _ = codec.latent_from_container(data)
    assert latent.shape == (settings["channels"], 5, 9) and channels == settings["channels"]
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]  # 72x40: no padding
    with torch.no_grad():
        mu = load_model(cb_path).model.encode(x)[0, : settings["channels"]].numpy()
    step = settings.get("quant_scale", 1.0)
    # anchors and non-anchors alike: y_hat = mean + round((y - mean) / s) * s, each with its own mean
    assert np.abs(latent - mu).max() <= 0.5 * step + 1e-4
    bits = codec.information_bits(data)
    assert 0 < bits <= 8 * len(header.payload)
    assert 8 * len(header.payload) - bits < 3 * 32 + 64  # three ANS streams: a word of padding each, + slack


def test_the_context_moves_the_non_anchor_means(cb_path):
    """The second pass's means are the context's, not h_s's: decoding with the context's correction removed
    gives another latent at the non-anchors only."""
    image = _photo()
    codec = get_codec("vaegan", model=cb_path, channels=4, refine_steps=0)
    data = codec.encode(image)
    latent, _, _ = codec.latent_from_container(data)
    c = unpack(data)
    z_symbols, symbols, mean, _ = codec._hyperprior_symbols(c, (4, 5, 9), 1.0)
    h_s_mean, _ = load_model(cb_path).hyperprior.coding_params(z_symbols, 5, 9, 4)
    anchors = anchor_mask(5, 9)
    assert np.array_equal(mean[:, anchors], h_s_mean[:, anchors])
    assert np.abs(mean[:, ~anchors] - h_s_mean[:, ~anchors]).max() > 0.05


def test_a_one_latent_image_has_an_empty_second_section(cb_path):
    image = _photo(8, 8)  # downsample 8: one latent position, an anchor
    data = get_codec("vaegan", model=cb_path, channels=4, refine_steps=0).encode(image)
    assert decode_file(data, model=cb_path).size == (8, 8)


def test_refinement_lowers_the_exact_cost(cb_path):
    image = _photo()
    plain = get_codec("vaegan", model=cb_path, channels=4, refine_steps=0)
    refined = get_codec("vaegan", model=cb_path, channels=4, refine_steps=10, refine_lambda=0.006)
    data_plain, data_refined = plain.encode(image), refined.encode(image)
    z = unpack(data_plain).params["z"]
    assert unpack(data_refined).payload[:z] == unpack(data_plain).payload[:z]  # z is kept
    target = np.asarray(image, dtype=np.float64) / 255

    def cost(codec, data):
        pixels = np.asarray(decode_file(data, model=cb_path), dtype=np.float64) / 255
        return ((pixels - target) ** 2).mean() + 0.006 * codec.information_bits(data) / (image.width * image.height)

    assert cost(refined, data_refined) <= cost(plain, data_plain) + 1e-3  # kept only when not worse (8-bit output)
    assert decode_file(data_refined, model=cb_path).size == image.size  # a plain decoder reads it


def test_files_of_the_other_hyperprior_layout_are_refused(cb_path, tmp_path):
    from tests.test_hyperprior import _hyper_model

    image = _photo()
    data = get_codec("vaegan", model=cb_path, channels=4, refine_steps=0).encode(image)
    params = dict(unpack(data).params)
    with pytest.raises(MalformedHeader, match="checkerboard context"):
        decode_file(repack(data, params={k: v for k, v in params.items() if k != "a"} | {"s": 1}), model=cb_path)
    with pytest.raises(MalformedHeader):  # s = 2 needs the anchor section's length
        decode_file(repack(data, params={k: v for k, v in params.items() if k != "a"}), model=cb_path)
    plain_model = _hyper_model(tmp_path / "hp.pt")
    plain = get_codec("vaegan", model=plain_model, channels=4, refine_steps=0).encode(image)
    with pytest.raises(MalformedHeader, match="codes with a hyperprior"):
        decode_file(repack(plain, params={**unpack(plain).params, "s": 2, "a": 4}), model=plain_model)


def test_a_reader_without_version_3_refuses_the_file_by_name(cb_path, monkeypatch):
    data = get_codec("vaegan", model=cb_path, channels=4, refine_steps=0).encode(_photo())
    monkeypatch.setattr(container, "SUPPORTED_VERSIONS", (1, 2))
    with pytest.raises(UnsupportedVersion, match="version 3 is not supported"):
        decode_file(data, model=cb_path)


def test_hostile_checkerboard_files_are_refused(cb_path):
    data = get_codec("vaegan", model=cb_path, channels=4, refine_steps=0).encode(_photo())
    c = unpack(data)
    z, a = c.params["z"], c.params["a"]
    malformed = {
        "a beyond the payload": repack(data, params={**c.params, "a": len(c.payload)}),
        "a not in words": repack(data, params={**c.params, "a": a - 1}),
        "a zero": repack(data, params={**c.params, "a": 0}),
        "a a string": repack(data, params={**c.params, "a": "8"}),
    }
    for name, bad in malformed.items():
        with pytest.raises(MalformedHeader):
            decode_file(bad, model=cb_path)
            pytest.fail(name)
    corrupt = {
        "4000x4000": repack(data, width=4000, height=4000),
        "anchor section cut": repack(data, payload=c.payload[: z + a - 4] + c.payload[z + a:],
                                     params={**c.params, "a": a - 4}),
        "word appended": repack(data, payload=c.payload + b"\x01\x00\x00\x00"),
        "second section cut": repack(data, payload=c.payload[:-4]),
        "anchor section grown": repack(data, payload=c.payload[: z + a] + b"\x01\x00\x00\x00" + c.payload[z + a:],
                                       params={**c.params, "a": a + 4}),
    }
    for name, bad in corrupt.items():
        with pytest.raises(CorruptPayload):
            decode_file(bad, model=cb_path)
            pytest.fail(name)


def test_decoding_is_identical_in_another_process_with_other_threads(cb_path, tmp_path):
    """Both passes' scale indices come from float64 CPU arithmetic: another process with another thread count
    decodes the very same pixels."""
    from tests.test_hyperprior import assert_decoded_alike_in_another_process

    assert_decoded_alike_in_another_process(cb_path, tmp_path)


# -- training ---------------------------------------------------------------------------------------------------

def _tiny_hp(**changes) -> dict:
    from tests.test_hyperprior import _tiny_hp as tiny

    return tiny(**changes)


def test_the_entropy_model_alone_learns_a_context_on_a_frozen_autoencoder(tmp_path):
    """From a hyperprior model without a context: the autoencoder is copied and left as it was, the context
    starts fresh (as no correction) and trains, and the model codes two-pass files."""
    from gencomp.train.loop import train
    from tests.test_train import AstronautCrops

    train("vaegan", data_dir=None, out_dir=tmp_path / "hp", overrides=_tiny_hp(steps=2), dataset=AstronautCrops(32),
          progress=False)
    source = tmp_path / "hp" / "model.pt"
    out = tmp_path / "cb"
    summary = train("vaegan", data_dir=None, out_dir=out, dataset=AstronautCrops(32), progress=False,
                    val_dataset=AstronautCrops(32, count=8, seed=1),
                    overrides=_tiny_hp(init_from=str(source), hyper_context="checkerboard", trainable="entropy_model",
                                       steps=6, lr_prior=1e-2, warmup_steps=0))
    assert summary["hyper_context"] == "checkerboard" and summary["trainable"] == "entropy_model"
    fresh = summary["initialised_from"]["tensors_initialised_fresh"]["hyperprior"]
    assert fresh and all(name.startswith("checkerboard.") for name in fresh)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["bpp"] > r["bpp_z"] > 0 and "recon" not in r for r in rows)  # the rate alone
    before, after = load_model(source), load_model(out / "model.pt")
    assert all(torch.equal(v, after.model.state_dict()[k]) for k, v in before.model.state_dict().items())
    assert after.hyperprior.context == "checkerboard"
    assert after.hyperprior.checkerboard.fuse[-1].weight.abs().sum() > 0  # the context learned something
    data = get_codec("vaegan", model=out / "model.pt", channels=8, refine_steps=0).encode(_photo(64, 48))
    assert unpack(data).params["s"] == 2
    assert decode_file(data, model=out / "model.pt").size == (64, 48)


def test_a_context_needs_a_hyperprior_and_entropy_training_the_rate(tmp_path):
    from gencomp.train.loop import train
    from gencomp.train.presets import PresetError
    from tests.test_train import TINY_VAEGAN, AstronautCrops

    with pytest.raises(PresetError, match="entropy_model=hyperprior"):
        train("vaegan", data_dir=None, out_dir=tmp_path / "a", dataset=AstronautCrops(32), progress=False,
              overrides=dict(TINY_VAEGAN, rate_lambda=0.05, hyper_context="checkerboard"))
    with pytest.raises(PresetError, match="rate_lambda > 0"):
        train("vaegan", data_dir=None, out_dir=tmp_path / "b", dataset=AstronautCrops(32), progress=False,
              overrides=dict(TINY_VAEGAN, trainable="entropy_model"))


def test_joint_training_with_a_context(tmp_path):
    from gencomp.train.loop import train
    from tests.test_train import AstronautCrops

    out = tmp_path / "joint"
    summary = train("vaegan", data_dir=None, out_dir=out, dataset=AstronautCrops(32), progress=False,
                    overrides=_tiny_hp(hyper_context="checkerboard", steps=3))
    assert summary["trainable"] == "all"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["bpp"] > 0 and r["recon"] > 0 for r in rows)
    assert load_model(out / "model.pt").hyperprior.context == "checkerboard"
