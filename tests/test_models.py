"""Model shapes and contracts the codecs rely on, the latent prior, and the model.pt store."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gencomp.models import (
    VAEGAN,
    Discriminator,
    GaussianChannelPrior,
    Generator,
    InversionEncoder,
    ModelFileError,
    PatchDiscriminator,
    load_model,
    save_gan,
    save_vaegan,
)
from gencomp.models.gan import ema_update

torch.set_num_threads(1)


def test_generator_maps_latents_to_tiles_in_range():
    torch.manual_seed(0)
    g = Generator(latent_dim=100, tile=32, width=8)
    x = g(torch.randn(3, 100) * 10)  # large latents still land in tanh's range
    assert x.shape == (3, 3, 32, 32)
    assert x.min() >= -1 and x.max() <= 1
    assert g.latent_dim == 100 and g.tile == 32


@pytest.mark.parametrize("norm", ["batch", "pixel"])
def test_generator_is_batch_independent(norm):
    # the codec inverts one tile at a time: G(z) must not depend on what else is in the batch. BatchNorm uses
    # batch statistics only in training; in eval mode (the codec's, the EMA copy's) its running statistics.
    torch.manual_seed(0)
    g = Generator(latent_dim=16, tile=16, width=8, norm=norm)
    g(torch.randn(8, 16))  # a training-mode pass moves BatchNorm's running statistics off their init
    g.eval()
    z = torch.randn(4, 16)
    torch.testing.assert_close(g(z)[:1], g(z[:1]), rtol=1e-5, atol=1e-6)
    assert g.config["norm"] == norm


def test_generator_config_without_norm_is_the_original_pixelnorm_model():
    g = Generator(**{"latent_dim": 8, "tile": 8, "width": 4})  # a model file written before the option
    assert g.norm == "pixel" and not any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    with pytest.raises(ValueError, match="norm must be one of"):
        Generator(latent_dim=8, tile=8, width=4, norm="layer")


def test_generator_rejects_bad_shapes():
    g = Generator(latent_dim=16, tile=16, width=4)
    with pytest.raises(ValueError, match=r"z of shape \(N, 16\)"):
        g(torch.randn(2, 17))
    with pytest.raises(ValueError, match="power of two"):
        Generator(latent_dim=16, tile=48, width=4)


def test_discriminator_and_encoder_shapes():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert Discriminator(tile=32, width=8)(x).shape == (2,)
    e = InversionEncoder(latent_dim=100, tile=32, width=8)
    assert e(x).shape == (2, 100)
    with pytest.raises(ValueError, match="32x32"):
        e(torch.rand(2, 3, 16, 16))


def test_ema_update_moves_towards_model():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    ema_update(a, b, decay=0.75)
    torch.testing.assert_close(a.weight, 0.75 * before + 0.25 * b.weight.detach())


@pytest.mark.parametrize("upsample", ["subpixel", "subpixel-blur", "nearest"])
@pytest.mark.parametrize("size", [(16, 16), (48, 80), (64, 32)])
def test_vaegan_is_fully_convolutional(size, upsample):
    torch.manual_seed(0)
    m = VAEGAN(max_channels=12, channel_set=(12, 4, 2), width=8, downsample=16, upsample=upsample).eval()
    x = torch.rand(2, 3, *size)
    mu = m.encode(x)
    assert mu.shape == (2, 12, size[0] // 16, size[1] // 16)
    out = m.decode(mu, channels=4)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1


def test_vaegan_subpixel_decoder_runs_no_convolution_at_full_resolution():
    m = VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=4, upsample="subpixel").eval()
    full_res_convs = []
    hooks = [c.register_forward_hook(lambda mod, inp, out: full_res_convs.append(out.shape[-1] == 32))
             for c in m.decoder.modules() if isinstance(c, torch.nn.Conv2d)]
    with torch.no_grad():
        assert m.decode(torch.zeros(1, 4, 8, 8)).shape == (1, 3, 32, 32)
    for h in hooks:
        h.remove()
    assert full_res_convs and not any(full_res_convs)
    assert m.config["upsample"] == "subpixel"
    with pytest.raises(ValueError, match="upsample must be one of"):
        VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=4, upsample="bicubic")


def test_vaegan_config_without_upsample_is_the_original_nearest_decoder():
    # model files written before the option existed carry no "upsample" key: they must load as they were built
    old = {"max_channels": 4, "channel_set": [4, 2], "width": 8, "downsample": 4}
    m = VAEGAN(**old)
    assert m.upsample == "nearest"
    assert any(isinstance(mod, torch.nn.Upsample) for mod in m.decoder.modules())


def test_vaegan_rejects_sizes_not_divisible_by_downsample():
    m = VAEGAN(max_channels=4, channel_set=(4, 2), width=4, downsample=16)
    with pytest.raises(ValueError, match="divisible by 16"):
        m.encode(torch.rand(1, 3, 40, 32))


def test_vaegan_decode_ignores_channels_beyond_c():
    torch.manual_seed(0)
    m = VAEGAN(max_channels=8, channel_set=(8, 4, 2), width=8, downsample=4).eval()
    y = torch.randn(1, 8, 4, 4)
    y_other = y.clone()
    y_other[:, 4:] = torch.randn(1, 4, 4, 4) * 5
    with torch.no_grad():
        torch.testing.assert_close(m.decode(y, channels=4), m.decode(y_other, channels=4))
        # and a latent that carries only the first C channels decodes the same
        torch.testing.assert_close(m.decode(y[:, :4], channels=4), m.decode(y, channels=4))
        assert not torch.allclose(m.decode(y, channels=8), m.decode(y_other, channels=8))
    with pytest.raises(ValueError):
        m.decode(y[:, :2], channels=4)


def test_vaegan_forward_masks_latent():
    torch.manual_seed(0)
    m = VAEGAN(max_channels=6, channel_set=(6, 2), width=4, downsample=4)
    mask = m.channel_mask(2)
    x_hat, _, _, y = m(torch.rand(2, 3, 16, 16), mask)
    assert x_hat.shape == (2, 3, 16, 16)
    assert torch.all(y[:, 2:] == 0) and torch.any(y[:, :2] != 0)


def test_minibatch_stddev_exposes_identical_samples_without_mixing_groups():
    from gencomp.models.gan import minibatch_stddev

    torch.manual_seed(0)
    real = torch.randn(8, 5, 4, 4)
    fake = torch.ones(8, 5, 4, 4) * 0.3  # a collapsed generator: every sample the same
    out = minibatch_stddev(torch.cat([real, fake]))
    assert out.shape == (16, 6, 4, 4)
    stat = out[:, -1, 0, 0]
    assert torch.all(stat[8:] < 1e-3) and torch.all(stat[:8] > 0.5)  # groups of 4 never straddle real/fake
    assert torch.equal(out[:, :5], torch.cat([real, fake]))
    assert minibatch_stddev(torch.randn(3, 2, 4, 4)).shape == (3, 3, 4, 4)  # odd batch: groups shrink to fit


def test_patch_discriminator_scores_patches():
    assert PatchDiscriminator(width=8, layers=3)(torch.rand(2, 3, 64, 48)).shape == (2, 1, 8, 6)


def test_prior_likelihood_is_a_distribution_over_integers():
    prior = GaussianChannelPrior(3)
    with torch.no_grad():
        prior.mean.copy_(torch.tensor([0.0, 2.3, -1.0]))
        prior.log_scale.copy_(torch.log(torch.tensor([1.0, 3.0, 0.5])))
    support = torch.arange(-60, 61, dtype=torch.float32)
    y = support.view(1, 1, -1, 1).expand(1, 3, -1, 1)
    probs = prior.likelihood(y)
    assert probs.shape == y.shape
    torch.testing.assert_close(probs.sum(dim=2).squeeze(), torch.ones(3), rtol=0, atol=1e-5)
    # the mode sits at the rounded mean
    assert support[probs[0, 1, :, 0].argmax()] == 2
    mean, scale = prior.channel_params()
    assert isinstance(mean, np.ndarray) and mean.shape == (3,) and scale.shape == (3,)
    np.testing.assert_allclose(scale, [1.0, 3.0, 0.5], rtol=1e-6)
    # bits of a single symbol match -log2 of its probability
    assert math.isclose(prior.bits(torch.zeros(1, 1, 1, 1)).item(), -math.log2(probs[0, 0, 60, 0].item()),
                        rel_tol=1e-5)


def test_prior_agrees_with_constriction():
    constriction = pytest.importorskip("constriction")
    prior = GaussianChannelPrior(2)
    with torch.no_grad():
        prior.mean.copy_(torch.tensor([0.4, -3.0]))
        prior.log_scale.copy_(torch.log(torch.tensor([2.0, 0.7])))
    mean, scale = prior.channel_params()
    model = constriction.stream.model.QuantizedGaussian(-50, 50)
    rng = np.random.default_rng(0)
    symbols = np.round(rng.normal(mean, scale, size=(1000, 2))).astype(np.int32)
    with torch.no_grad():
        probs = prior.likelihood(torch.tensor(symbols.T, dtype=torch.float32).view(1, 2, 1000, 1))
    ideal_bits = float(-torch.log2(probs).sum())
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.ravel(), model, np.tile(mean, 1000), np.tile(scale, 1000))
    # the coder's cost matches the prior's information content: same distribution, same bins
    assert abs(coder.num_bits() - ideal_bits) < 0.01 * ideal_bits + 64
    decoded = coder.decode(model, np.tile(mean, 1000), np.tile(scale, 1000))
    np.testing.assert_array_equal(decoded, symbols.ravel())


def test_prior_fit_sets_mean_and_std():
    prior = GaussianChannelPrior(2)
    values = torch.tensor([[1.0, 3.0, 5.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    prior.fit(torch.full((2,), 3.0, dtype=torch.float64), values.sum(1), values.pow(2).sum(1))
    mean, scale = prior.channel_params()
    np.testing.assert_allclose(mean, [3.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(scale, [math.sqrt(8 / 3), 0.11], rtol=1e-5)  # constant channel: floor
    with pytest.raises(ValueError, match="no latent"):
        prior.fit(torch.zeros(2, dtype=torch.float64), values.sum(1), values.pow(2).sum(1))


def test_store_roundtrip_gan(tmp_path):
    torch.manual_seed(0)
    g, e = Generator(16, 16, 4), InversionEncoder(16, 16, 4)
    fp = save_gan(tmp_path / "model.pt", generator=g, encoder=e, metadata={"steps": 3})
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.kind == "gan" and loaded.fingerprint == fp and len(fp) == 16
    assert loaded.config["latent_dim"] == 16 and loaded.config["tile"] == 16
    assert not loaded.generator.training and loaded.metadata == {"steps": 3}
    z = torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.generator(z), g(z))
        x = torch.rand(2, 3, 16, 16)
        torch.testing.assert_close(loaded.encoder(x), e.eval()(x))


def test_store_roundtrip_vaegan_and_fingerprint_tracks_bytes(tmp_path):
    torch.manual_seed(0)
    m, p = VAEGAN(6, (6, 2), 4, 4), GaussianChannelPrior(6)
    fp1 = save_vaegan(tmp_path / "a.pt", model=m, prior=p, quant_step=0.5, prior_fitted=True)
    loaded = load_model(tmp_path / "a.pt")
    assert loaded.kind == "vaegan" and loaded.quant_step == 0.5 and loaded.config["prior"]["fitted"] is True
    assert loaded.model.channel_set == (6, 2) and not loaded.model.training
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.encode(x), m.eval().encode(x))
    with torch.no_grad():
        p.mean.add_(1.0)
    fp2 = save_vaegan(tmp_path / "b.pt", model=m, prior=p, quant_step=0.5, prior_fitted=True)
    assert fp1 != fp2
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files


def test_load_model_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelFileError, match="nope.pt"):
        load_model(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="corrupt.pt"):
        load_model(corrupt)
    wrong = tmp_path / "wrong.pt"
    torch.save({"format": 99, "kind": "gan"}, wrong)
    with pytest.raises(ModelFileError, match="wrong.pt"):
        load_model(wrong)


def test_blurred_subpixel_decoder_keeps_the_weights_layout_and_starts_without_a_phase_pattern():
    from gencomp.models.vaegan import ShuffleUp

    torch.manual_seed(0)
    plain = VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=8, upsample="subpixel")
    blurred = VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=8, upsample="subpixel-blur").eval()
    # same state_dict keys and shapes: --init-from carries a plain model's weights into a blurred one
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in blurred.state_dict().items()}
    blurred.load_state_dict(plain.state_dict())
    # ICNR: a fresh blurred decoder's last (unblurred) stage gives all four sub-pixel phases the same value
    fresh = VAEGAN(max_channels=4, channel_set=(4, 2), width=8, downsample=8, upsample="subpixel-blur").eval()
    with torch.no_grad():
        out = fresh.decode(torch.randn(1, 4, 4, 4))
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        torch.testing.assert_close(out[..., dy::2, dx::2], out[..., 0::2, 0::2])
    with torch.no_grad():
        out = plain.eval().decode(torch.randn(1, 4, 4, 4))
    assert not torch.allclose(out[..., 0::2, 1::2], out[..., 0::2, 0::2])
    # the blur removes a pattern that alternates from one shuffled pixel to the next
    up = ShuffleUp(blur=True)
    checker = torch.tensor([1.0, -1.0, -1.0, 1.0]).view(1, 4, 1, 1).expand(1, 4, 6, 6)
    blurred_checker = up(checker)[..., 1:-1, 1:-1]
    assert ShuffleUp(blur=False)(checker).abs().min() == 1.0
    torch.testing.assert_close(blurred_checker, torch.zeros_like(blurred_checker))
