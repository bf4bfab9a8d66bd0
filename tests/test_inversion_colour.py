"""GAN inversion's per-tile colour parameters (``colour="affine"``, the default): a gain and an offset per channel
and tile, searched with z, stored as 6-bit codes before the z section; files without them decode as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gencomp.codecs import decode_file, get_codec
from gencomp.codecs.container import CorruptPayload, MalformedHeader, unpack
from gencomp.codecs.inversion import COLOUR_BITS, COLOUR_PARAMS, apply_colour, colour_indices, colour_values, fit_colour
from gencomp.codecs.tiling import TileGrid
from gencomp.metrics import psnr
from gencomp.models import load_model
from tests.gcz_files import repack
from tests.tiny_models import LATENT, TILE
from tests.tiny_models import synthetic_photo as _photo


def test_gain_one_and_offset_zero_are_exact_and_codes_round_to_the_nearest_level():
    assert np.array_equal(colour_values(colour_indices(np.zeros(6))), np.zeros(6, dtype=np.float32))
    values = np.random.default_rng(0).uniform(-1, 1, size=1000)
    levels = colour_values(colour_indices(values))
    assert np.abs(levels - values).max() <= 0.5 / 31 + 1e-6  # half a step of the 63 levels over [-1, 1]
    assert colour_indices(np.array([-5.0, 5.0])).tolist() == [0, 62]  # out of range: clipped to the end levels
    assert colour_indices(values).max() < 1 << COLOUR_BITS


def test_the_least_squares_fit_recovers_a_known_gain_and_offset():
    tiles = torch.rand(4, 3, 8, 8) * 2 - 1
    truth = torch.tensor([[0.5, -0.3, 0.0, 0.2, -0.4, 0.1]]).repeat(4, 1)
    assert torch.allclose(fit_colour(tiles, apply_colour(tiles, truth)), truth, atol=1e-5)
    flat = torch.zeros(1, 3, 8, 8)  # no contrast to scale: gain 1, the offset alone
    assert torch.allclose(fit_colour(flat, flat + 0.25), torch.tensor([[0.0, 0.0, 0.0, 0.25, 0.25, 0.25]]))


def _shifted_generator_image(gan_path, cols: int = 3, rows: int = 2) -> Image.Image:
    """Tiles the tiny generator can draw, then given a colour cast it cannot: red at 0.6x, blue lifted."""
    gen = load_model(gan_path).generator
    with torch.no_grad():
        tiles = gen(torch.randn(rows * cols, LATENT, generator=torch.Generator().manual_seed(3)))
    cast = tiles * torch.tensor([0.6, 1.0, 1.0])[:, None, None] + torch.tensor([0.0, 0.0, 0.4])[:, None, None]
    rgb = cast.reshape(rows, cols, 3, TILE, TILE).permute(0, 3, 1, 4, 2).reshape(rows * TILE, cols * TILE, 3)
    return Image.fromarray(np.clip((rgb.numpy() + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8))


def test_the_colour_parameters_take_a_colour_cast_the_generator_cannot_draw(gan_path):
    image = _shifted_generator_image(gan_path)
    scores = {}
    for colour in ("none", "affine"):
        codec = get_codec("gan-inversion", model=gan_path, steps=30, overlap=0, colour=colour)
        scores[colour] = psnr(image, decode_file(codec.encode(image), model=gan_path))
    assert scores["affine"] > scores["none"] + 3.0, scores


@pytest.mark.parametrize("bits", [32, 8])
def test_a_colour_file_holds_the_codes_then_z(gan_path, bits):
    image = _photo(20, 12)
    grid = TileGrid(12, 20, TILE, overlap=TILE // 8)
    with_colour = unpack(get_codec("gan-inversion", model=gan_path, steps=2, bits=bits).encode(image))
    without = unpack(get_codec("gan-inversion", model=gan_path, steps=2, bits=bits, colour="none").encode(image))
    assert with_colour.params["k"] == COLOUR_BITS and "k" not in without.params
    colour_bytes = -(-grid.count * COLOUR_PARAMS * COLOUR_BITS // 8)
    z_bytes = grid.count * LATENT * bits // 8
    assert len(with_colour.payload) == colour_bytes + z_bytes
    assert len(without.payload) == z_bytes


def test_colour_none_writes_the_file_of_before(gan_path):
    """The z-only file: no "k" in the header, and the search is the one without colour parameters."""
    image = _photo(20, 12)
    a = get_codec("gan-inversion", model=gan_path, steps=3, colour="none").encode(image)
    b = get_codec("gan-inversion", model=gan_path, steps=3, colour="none").encode(image)
    assert a == b and "k" not in unpack(a).params


@pytest.mark.parametrize("entropy", ["none", "gaussian"])
def test_a_damaged_colour_section_is_refused(gan_path, entropy):
    data = get_codec("gan-inversion", model=gan_path, steps=1, bits=8, entropy=entropy).encode(_photo(20, 12))
    c = unpack(data)
    colour_bytes = -(-TileGrid(12, 20, TILE, overlap=TILE // 8).count * COLOUR_PARAMS * COLOUR_BITS // 8)
    with pytest.raises(CorruptPayload):  # cut inside the colour section
        decode_file(repack(data, payload=c.payload[: colour_bytes - 1]), model=gan_path)
    past_last_level = b"\xff" + c.payload[1:]  # the first code is 63: past the 63 levels 0..62
    with pytest.raises(CorruptPayload, match="past the last level"):
        decode_file(repack(data, payload=past_last_level), model=gan_path)
    with pytest.raises(MalformedHeader, match="colour parameter bits"):
        decode_file(repack(data, params={**c.params, "k": 5}), model=gan_path)


def test_results_cached_before_the_colour_parameters_are_not_taken_for_the_default(gan_path):
    """Earlier code wrote z alone: a cached cell of before (no "colour" in its settings) must not be the default's."""
    default = get_codec("gan-inversion", model=gan_path).defining_settings()
    plain = get_codec("gan-inversion", model=gan_path, colour="none").defining_settings()
    assert default["colour"] == "affine" and plain["colour"] == "none"
