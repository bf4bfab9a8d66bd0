"""GAN inversion with overlapping, blended tiles (``overlap``): the blend's arithmetic, the file format (edge-to-edge
files unchanged, the overlap in the header), the joint search, and no tile seams on a real photo with the
shipped GAN."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gencomp.codecs import decode_file, get_codec, inspect
from gencomp.codecs.container import CorruptPayload, MalformedHeader, unpack
from gencomp.codecs.entropy import unpack_uint
from gencomp.codecs.inversion import COLOUR_BITS, COLOUR_PARAMS, apply_colour, colour_values
from gencomp.codecs.tiling import TileGrid, blend_rows, blend_tiles, blend_weights, merge_tiles, split_tiles
from gencomp.grid_artifacts import grid_pattern
from gencomp.models import load_model
from tests.gcz_files import repack
from tests.tiny_models import LATENT, TILE
from tests.tiny_models import synthetic_photo as _photo

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
SHIPPED_GAN = Path(__file__).parents[1] / "gencomp" / "assets" / "gan-default.pt"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mse(a: Image.Image, b: Image.Image) -> float:
    return float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))



# -- the grid and the blend ----------------------------------------------------------------------------------

GRIDS = [(1, 1, 0), (8, 8, 3), (7, 30, 2), (9, 17, 4), (20, 12, 1), (33, 47, 3), (64, 64, 4)]


def test_grid_geometry():
    assert (TileGrid(512, 768, 64).rows, TileGrid(512, 768, 64).cols) == (8, 12)  # edge to edge, as before
    grid = TileGrid(512, 768, 64, overlap=8)  # a Kodak image: tiles every 56 px
    assert (grid.stride, grid.rows, grid.cols, grid.padded_height, grid.padded_width) == (56, 9, 14, 512, 792)
    assert TileGrid(128, 128, 128, overlap=32).count == 1  # a 128-px face on a 128-px domain GAN: one tile
    assert TileGrid(100, 60, 64, overlap=16).count == 2  # rows at 0 and 48 cover 100 px
    for bad in (-1, 33):
        with pytest.raises(ValueError, match="overlap must be 0..32"):
            TileGrid(100, 100, 64, overlap=bad)


@pytest.mark.parametrize("height,width,overlap", GRIDS)
def test_blend_weights_sum_to_one_everywhere(height, width, overlap):
    grid = TileGrid(height, width, TILE, overlap)
    weights = blend_weights(grid)
    canvas = np.zeros((grid.padded_height, grid.padded_width))
    s = grid.stride
    for index, w in enumerate(weights):
        row, col = divmod(index, grid.cols)
        canvas[row * s : row * s + TILE, col * s : col * s + TILE] += w
    np.testing.assert_allclose(canvas, 1.0, atol=1e-6)
    assert (weights > 0).all()  # no tile is wasted on pixels it does not show
    # the outer edges are not faded: the corners belong to one tile each
    assert weights[0, 0, 0] == 1.0 and weights[-1, -1, -1] == 1.0


@pytest.mark.parametrize("height,width,overlap", GRIDS)
def test_blended_true_crops_reassemble_the_image(height, width, overlap):
    image = np.random.default_rng(0).random((height, width, 3)).astype(np.float32)
    tiles, grid = split_tiles(image, TILE, overlap)
    assert tiles.shape == (grid.count, TILE, TILE, 3)
    np.testing.assert_allclose(blend_tiles(tiles, grid), image, atol=1e-6)
    levels = np.random.default_rng(1).integers(0, 256, (height, width, 3)).astype(np.float32)
    tiles, grid = split_tiles(levels, TILE, overlap)
    assert np.array_equal(np.rint(blend_tiles(tiles, grid)), levels)  # 8-bit pixels come back exactly


def test_without_overlap_blending_is_pasting():
    image = np.random.default_rng(2).random((20, 12, 3)).astype(np.float32)
    tiles, grid = split_tiles(image, TILE)
    assert np.array_equal(blend_tiles(tiles, grid), merge_tiles(tiles, grid))
    with pytest.raises(ValueError, match="blend_tiles"):
        merge_tiles(*split_tiles(image, TILE, 2))


def test_blend_rows_yields_finished_rows_top_down():
    image = np.random.default_rng(3).random((41, 23, 3)).astype(np.float32)
    tiles, grid = split_tiles(image, TILE, 3)
    pieces = list(blend_rows(iter(tiles), grid))
    tops = [top for top, _ in pieces]
    assert tops == [r * grid.stride for r in range(grid.rows)]
    assert all(rows.shape[0] == grid.stride for _, rows in pieces[:-1])  # a strip at a time
    np.testing.assert_allclose(np.concatenate([rows for _, rows in pieces]), image, atol=1e-6)
    with pytest.raises(ValueError, match="got 31 tiles"):
        list(blend_rows(iter(tiles[:-1]), grid))


def test_blending_holds_one_strip_not_every_tile():
    """What a decoder allocates for blending grows with the image's width, not with the tile count (a file of
    1-bit latents declaring a long, thin image must not cost a tile's worth of floats per few bytes of payload)."""
    grid = TileGrid(8, 4000, TILE, overlap=4)  # one row of 999 tiles
    tile = np.ones((TILE, TILE, 3), dtype=np.float32)
    strip = 8 * 4000 * 3 * 4  # one float32 strip, the image's height here
    tracemalloc.start()
    try:
        extremes = [(rows.min(), rows.max()) for _, rows in blend_rows((tile for _ in range(grid.count)), grid)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * strip  # the strip and the finished rows' copy; all weights at once would be 2.5 more
    np.testing.assert_allclose(extremes, 1.0, atol=1e-6)


# -- the file format -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gan-inversion-float32.gcz", "gan-inversion-8bit.gcz", "gan-inversion-entropy.gcz"])
def test_edge_to_edge_files_are_the_files_of_before(name):
    """overlap=0 re-encodes the golden image into the golden file written before tiles could overlap: the same
    header (no overlap key), the same latents and the same pixels. Byte for byte on the CPU that wrote them; on
    another CPU the search's float sums round differently (other SIMD kernels: README, Determinism), which moves a
    float32 latent or the fitted mean in its last bits and nothing else. A changed tiling moves latents by their
    own size (std 0.18 here) and the pixels by many grey levels."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from make_golden_files import GOLDEN as SETTINGS, golden_image

    codec, settings, _ = SETTINGS[name]
    assert settings["overlap"] == 0
    record = json.loads((GOLDEN / "golden.json").read_text())["files"][name]
    model = GOLDEN / record["model"]
    torch.set_num_threads(2)  # as on the 2-core machine that wrote them
    try:
        data = get_codec(codec, model=model, **settings).encode(golden_image())
    finally:
        torch.set_num_threads(1)
    old = (GOLDEN / name).read_bytes()
    if hashlib.sha256(data).hexdigest() == record["file_sha256"]:
        return  # the writing machine's arithmetic: nothing more to compare
    new_file, old_file = unpack(data), unpack(old)
    for field in ("codec_id", "fingerprint", "width", "height", "total_size"):
        assert getattr(new_file, field) == getattr(old_file, field), field
    assert "o" not in new_file.params and new_file.params.keys() == old_file.params.keys()
    for key, value in old_file.params.items():
        assert new_file.params[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    if old_file.params.get("b") == 32:  # float32 latents as they are
        np.testing.assert_allclose(np.frombuffer(new_file.payload, np.float32),
                                   np.frombuffer(old_file.payload, np.float32), atol=1e-4)
    new_pixels = np.asarray(decode_file(data, model=model), dtype=np.float64)
    old_pixels = np.asarray(decode_file(old, model=model), dtype=np.float64)
    assert np.abs(new_pixels - old_pixels).max() <= 1  # one grey level at most


def test_an_image_of_one_tile_is_coded_as_without_overlap(gan_path):
    """A 128x128 face on a 128-px domain GAN has no neighbour to blend with: overlap changes nothing."""
    for size in ((TILE, TILE), (5, 7)):
        image = _photo(*size)
        plain = get_codec("gan-inversion", model=gan_path, steps=4).encode(image)
        assert get_codec("gan-inversion", model=gan_path, steps=4, overlap=TILE // 2).encode(image) == plain


@pytest.mark.parametrize("colour", ["none", "affine"])
@pytest.mark.parametrize("bits,entropy", [(32, "none"), (6, "none"), (6, "gaussian")])
def test_overlapped_file_records_the_overlap_and_decodes_to_the_blend(gan_path, bits, entropy, colour):
    image = _photo(20, 12)
    codec = get_codec("gan-inversion", model=gan_path, steps=3, overlap=2, bits=bits, entropy=entropy, colour=colour)
    data = codec.encode(image)
    container = unpack(data)
    assert container.params["o"] == 2
    grid = TileGrid(12, 20, TILE, overlap=2)  # 2 x 3 tiles every 6 px
    assert grid.count == 6
    colour_bytes = 0 if colour == "none" else -(-grid.count * COLOUR_PARAMS * COLOUR_BITS // 8)
    z = codec._deserialize(container.payload[colour_bytes:], codec._storage_from_header(container.params),
                           (grid.count, LATENT))
    with torch.no_grad():
        tiles = load_model(gan_path).generator(torch.from_numpy(z))
        if colour == "affine":  # each tile's gain and offset come before z, and apply before the blend
            codes = unpack_uint(container.payload[:colour_bytes], count=grid.count * COLOUR_PARAMS, bits=COLOUR_BITS)
            tiles = apply_colour(tiles, torch.from_numpy(colour_values(codes.reshape(grid.count, COLOUR_PARAMS))))
        tiles = tiles.permute(0, 2, 3, 1).numpy()
    expected = np.clip((blend_tiles(tiles, grid) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    decoded = decode_file(data, model=gan_path)
    assert decoded.size == (20, 12)
    assert np.array_equal(np.asarray(decoded), expected)


def test_a_header_with_a_bad_overlap_is_refused(gan_path):
    data = get_codec("gan-inversion", model=gan_path, steps=1, overlap=2, bits=6).encode(_photo(24, 16))  # 12 tiles
    params = unpack(data).params
    for bad in (TILE // 2 + 1, -1, "2", 2.0):
        with pytest.raises(MalformedHeader, match="overlap"):
            decode_file(repack(data, params={**params, "o": bad}), model=gan_path)
    # the overlap decides the tile count, and so the payload length the header is checked against
    for changed in ({k: v for k, v in params.items() if k != "o"}, {**params, "o": 4}):  # 6 tiles, 15 tiles
        with pytest.raises(CorruptPayload, match="latents"):
            decode_file(repack(data, params=changed), model=gan_path)


def test_an_overlapped_file_declaring_a_larger_image_is_refused_before_decoding(gan_path):
    for bits, entropy in ((1, "none"), (6, "gaussian")):
        data = get_codec("gan-inversion", model=gan_path, steps=1, bits=bits, entropy=entropy).encode(_photo(24, 16))
        assert unpack(data).params["o"] == 1  # the default: an eighth of the 8-px tile
        for size in ({"width": 4000, "height": 4000}, {"width": 4000, "height": 1}):
            with pytest.raises(CorruptPayload, match="latents"):
                decode_file(repack(data, **size), model=gan_path)


def test_overlap_setting_is_validated(gan_path):
    with pytest.raises(ValueError, match="overlap must be >= 0"):
        get_codec("gan-inversion", model=gan_path, overlap=-1)
    with pytest.raises(ValueError, match="over half the model's 8-px tile"):
        get_codec("gan-inversion", model=gan_path, overlap=TILE // 2 + 1).encode(_photo(20, 12))


# -- the search ----------------------------------------------------------------------------------------------


def test_the_search_lowers_the_blend_error_and_restarts_never_hurt(gan_path):
    image = _photo(22, 14)
    errors = {}
    for steps, restarts in [(0, 1), (30, 1), (30, 3)]:
        codec = get_codec("gan-inversion", model=gan_path, steps=steps, restarts=restarts, init="random", overlap=3)
        errors[steps, restarts] = _mse(codec.decode(codec.encode(image)), image)
    assert errors[30, 1] < 0.7 * errors[0, 1]
    assert errors[30, 3] <= errors[30, 1] + 1e-9


def test_overlapped_encoding_is_deterministic_given_the_seed(gan_path):
    image = _photo(20, 12)
    make = lambda seed: get_codec("gan-inversion", model=gan_path, steps=5, init="random", seed=seed,  # noqa: E731
                                  overlap=2)
    assert make(1).encode(image) == make(1).encode(image)
    assert make(1).encode(image) != make(2).encode(image)


# Grey levels (gencomp.grid_artifacts' ``pattern``). Measured on this crop, 3 steps: edge to edge 2.34 on the 64-px
# grid; default overlap (8 px) 0.45 on the 64-px grid, 1.41 on the 56-px grid the tiles sit on; controls on
# unrelated periods (45, 53, 59 px) 0.4-0.9. What remains on the 56-px grid is the generator's own texture, fixed
# relative to each tile's corner and strongest inside the tile, not a step where tiles meet.
SEAM_LIMIT = 1.0
TILE_TEXTURE_LIMIT = 1.8


def test_blended_tiles_leave_no_seams_on_a_photo():
    """A 256x256 crop of Kodak's kodim04 (released for unrestricted use) with the shipped 64-px GAN, a few search
    steps: edge-to-edge tiles leave a seam pattern on the 64-px grid; blended tiles (the default overlap) do not,
    and the pattern left on the grid they sit on (every 56 px) is weaker than the seams were."""
    image = Image.open(FIXTURES / "kodim04-crop256.png").convert("RGB")
    patterns = {}
    for overlap in (0, None):  # the seams as they were (z alone, edge to edge), then the default codec
        codec = get_codec("gan-inversion", model=SHIPPED_GAN, steps=3, overlap=overlap,
                          **({"colour": "none"} if overlap == 0 else {}))
        data = codec.encode(image)
        assert inspect(data)["params"].get("o", 0) == (0 if overlap == 0 else 8)
        decoded = codec.decode(data)
        patterns[overlap] = (grid_pattern(image, decoded, 64).pattern, grid_pattern(image, decoded, 56).pattern)
    assert patterns[0][0] > TILE_TEXTURE_LIMIT  # the seams this test is about
    assert patterns[None][0] < SEAM_LIMIT, patterns
    assert patterns[None][1] < TILE_TEXTURE_LIMIT, patterns
