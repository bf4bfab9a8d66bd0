"""Encode-time latent refinement (gencomp/codecs/refine.py) and the vaegan codec's refine_* settings."""

from __future__ import annotations

import pytest
import torch

from gencomp.codecs import get_codec
from gencomp.codecs.container import unpack
from gencomp.codecs.refine import refine_latent, sga_round
from gencomp.metrics import mse
from tests.tiny_models import synthetic_photo as _photo


def test_sga_round_tends_to_rounding_and_passes_gradients():
    y = torch.tensor([0.1, 0.4, 0.6, 0.9, -1.2, 2.0], requires_grad=True)
    g = torch.Generator().manual_seed(0)
    hard = sga_round(y, 1e-3, g)
    assert torch.allclose(hard, torch.round(y.detach()), atol=1e-3)
    soft = sga_round(y, 0.5, g)
    soft.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    assert ((soft >= torch.floor(y)) & (soft <= torch.floor(y) + 1)).all()


def test_refinement_finds_the_symbols_a_known_problem_wants():
    # identity decoder: the best symbols under a negligible rate are round(target), whatever the start
    target = torch.tensor([[[[0.2, 2.8], [-1.9, 4.1]]]])
    start = torch.zeros_like(target)
    flat_bits = lambda y: (y * 0).sum()  # noqa: E731 - every symbol costs the same
    result = refine_latent(start, target, decode=lambda y: y, bits=flat_bits, steps=300, lam=1e-3, lr=0.1)
    assert torch.equal(result.latent, torch.round(target))
    assert result.cost < result.initial_cost
    raw = refine_latent(start, target, decode=lambda y: y, bits=None, steps=300, lam=1e-3, lr=0.1)
    assert torch.allclose(raw.latent, target, atol=0.05)  # raw storage: no rounding, distortion only


def test_refinement_never_returns_a_worse_latent():
    # a decoder that ignores the latent: no step can help, and the encoder's own latent must come back
    target = torch.rand(1, 3, 8, 8)
    start = torch.randn(1, 2, 2, 2) * 3
    result = refine_latent(start, target, decode=lambda y: torch.zeros_like(target) + y.mean() * 0,
                           bits=lambda y: (y**2).sum(), steps=5, lam=1.0)
    assert result.cost <= result.initial_cost
    assert torch.equal(result.latent, torch.round(start)) or result.cost < result.initial_cost


def _rd_cost(codec, image, data, lam):
    decoded = codec.decode(data)
    bits = len(unpack(data).payload) * 8
    return mse(image, decoded) / 255.0**2 + lam * bits / (image.width * image.height)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_refined_files_cost_less_and_decode_like_any_other(vaegan_path, precision):
    image = _photo(40, 28)
    lam = 0.01
    plain = get_codec("vaegan", model=vaegan_path, refine_steps=0, refine_lambda=lam)
    refined = get_codec("vaegan", model=vaegan_path, refine_steps=40, refine_lambda=lam, precision=precision)
    plain_data, refined_data = plain.encode(image), refined.encode(image)
    assert refined_data != plain_data
    assert unpack(refined_data).params == unpack(plain_data).params  # nothing new in the header
    # the refinement's cost is measured on the real file: its payload length and its decode
    assert _rd_cost(plain, image, refined_data, lam) < _rd_cost(plain, image, plain_data, lam)
    assert refined.encode(image) == refined_data  # seeded: the same image gives the same file


def test_refinement_of_raw_storage_lowers_distortion(vaegan_path):
    image = _photo(32, 32)
    plain = get_codec("vaegan", model=vaegan_path, storage="raw", refine_steps=0)
    refined = get_codec("vaegan", model=vaegan_path, storage="raw", refine_steps=30)
    refined_data = refined.encode(image)
    assert len(refined_data) == len(plain.encode(image))
    assert mse(image, plain.decode(refined_data)) < mse(image, plain.decode(plain.encode(image)))


@pytest.mark.parametrize("bad", [{"refine_steps": -1}, {"refine_steps": 10**6}, {"refine_lambda": 0.0},
                                 {"refine_lambda": -1.0}])
def test_refine_settings_are_validated(vaegan_path, bad):
    with pytest.raises(ValueError, match="refine_"):
        get_codec("vaegan", model=vaegan_path, **bad)


def test_refinement_leaves_the_shared_model_untouched(vaegan_path):
    codec = get_codec("vaegan", model=vaegan_path, refine_steps=3)
    codec.encode(_photo(16, 16))
    params = list(codec.loaded.model.parameters()) + list(codec.loaded.prior.parameters())
    assert all(p.grad is None for p in params)
    # the search runs on a channels_last copy; decoding keeps the layout whose arithmetic golden files pin
    assert all(p.is_contiguous() for p in codec.loaded.model.parameters())


def test_auto_precision_searches_in_bfloat16_only_where_the_hardware_computes_it(vaegan_path, monkeypatch):
    import gencomp.hardware as hardware
    from gencomp.codecs.base import REGISTRY

    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(hardware, "has_native_bf16", lambda device, native=native: native)
        assert get_codec("vaegan", model=vaegan_path)._search_precision() == expected
        assert hardware.search_precision("auto", "cpu") == expected
        for forced in ("float32", "bfloat16"):
            assert get_codec("vaegan", model=vaegan_path, precision=forced)._search_precision() == forced
            assert hardware.search_precision(forced, "cpu") == forced
    # both searches (the VAE-GAN's refinement, the GAN's inversion) default to auto
    for name in ("vaegan", "gan-inversion"):
        assert {p.name: p.default for p in REGISTRY.get(name).params}["precision"] == "auto"


def test_refinement_precision_is_checked(vaegan_path):
    with pytest.raises(ValueError, match="precision"):
        get_codec("vaegan", model=vaegan_path, precision="float16")
    with pytest.raises(ValueError, match="precision"):
        refine_latent(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), decode=lambda y: y, bits=None, steps=1,
                      lam=1.0, precision="half")
