"""Generative codecs (GAN inversion, VAE-GAN) on tiny randomly initialised models, and the tiling they use."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from gencomp.codecs import decode_file, get_codec, inspect
from gencomp.codecs.container import unpack
from gencomp import metrics
from gencomp.codecs.entropy import unpack_uint
from gencomp.codecs.inversion import (
    COLOUR_BITS,
    COLOUR_PARAMS,
    _ssim_per_item,
    apply_colour,
    colour_values,
    dequantize_uniform,
    quantize_uniform,
)
from gencomp.codecs.tiling import TileGrid, merge_tiles, pad_to_multiple, split_tiles
from gencomp.models import load_model
from tests.tiny_models import LATENT, TILE
from tests.tiny_models import synthetic_photo as _photo



@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _generated(gan_path, rows: int, cols: int, seed: int = 3) -> tuple[Image.Image, np.ndarray]:
    """An image the tiny generator can represent exactly: G(z) tiles for known z."""
    gen = load_model(gan_path).generator
    z = torch.randn(rows * cols, LATENT, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        tiles = gen(z).permute(0, 2, 3, 1).numpy()
    grid = TileGrid(height=rows * TILE, width=cols * TILE, tile=TILE)
    pixels = np.clip((merge_tiles(tiles, grid) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB"), z.numpy()


def _mse(a: Image.Image, b: Image.Image) -> float:
    return float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))


# -- tiling -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (7, 8), (8, 8), (9, 17), (30, 2)])
def test_tiles_round_trip_any_size(size):
    image = np.random.default_rng(0).random((*size, 3))
    tiles, grid = split_tiles(image, 8)
    assert tiles.shape == (grid.rows * grid.cols, 8, 8, 3)
    assert np.array_equal(merge_tiles(tiles, grid), image)


def test_padding_is_a_reflection():
    column = np.arange(5, dtype=float).reshape(5, 1, 1)
    padded = pad_to_multiple(np.repeat(column, 3, axis=1), 8)
    assert padded.shape == (8, 8, 1)
    assert padded[:, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]


def test_tile_order_is_row_major():
    image = np.zeros((16, 24, 1))
    image[8:, 16:] = 1.0  # bottom-right tile
    tiles, _ = split_tiles(image, 8)
    assert [t.mean() for t in tiles] == [0, 0, 0, 0, 0, 1]


# -- GAN inversion -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("colour", ["none", "affine"])
def test_float_latents_decode_exactly_as_the_generator(gan_path, colour):
    image = _photo(20, 12)  # 3 x 2 tiles, padded
    codec = get_codec("gan-inversion", model=gan_path, steps=3, overlap=0, colour=colour)  # blended: test_inversion_overlap
    data = codec.encode(image)
    payload = unpack(data).payload
    colour_bytes = 0 if colour == "none" else -(-6 * COLOUR_PARAMS * COLOUR_BITS // 8)
    assert len(payload) == colour_bytes + 6 * LATENT * 4
    z = np.frombuffer(payload[colour_bytes:], dtype="<f4").reshape(6, LATENT)
    with torch.no_grad():
        tiles = load_model(gan_path).generator(torch.from_numpy(z.copy()))
        if colour == "affine":  # each tile's 2**gain * G(z) + offset, from the codes before z
            codes = unpack_uint(payload[:colour_bytes], count=6 * COLOUR_PARAMS, bits=COLOUR_BITS)
            tiles = apply_colour(tiles, torch.from_numpy(colour_values(codes.reshape(6, COLOUR_PARAMS))))
        tiles = tiles.permute(0, 2, 3, 1).numpy()
    expected = merge_tiles(np.clip((tiles + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8), TileGrid(12, 20, TILE))
    decoded = codec.decode(data)
    assert decoded.size == (20, 12)
    assert np.array_equal(np.asarray(decoded), expected)


@pytest.mark.parametrize("bits,entropy,expected_len", [(16, "none", 4 * LATENT * 2), (5, "none", 4 * LATENT * 5 // 8)])
def test_payload_sizes(gan_path, bits, entropy, expected_len):
    data = get_codec("gan-inversion", model=gan_path, steps=0, bits=bits, entropy=entropy, overlap=0,
                     colour="none").encode(_photo(16, 16))  # z alone (the colour section: test_inversion_colour)
    assert len(unpack(data).payload) == expected_len


def test_search_reduces_error_and_restarts_never_hurt(gan_path):
    image, _ = _generated(gan_path, 2, 2)
    errors = {}
    for steps, restarts in [(0, 1), (40, 1), (40, 3)]:
        codec = get_codec("gan-inversion", model=gan_path, steps=steps, restarts=restarts, lr=0.05, init="random",
                          overlap=0)  # the image is made of edge-to-edge tiles
        errors[steps, restarts] = _mse(codec.decode(codec.encode(image)), image)
    assert errors[40, 1] < 0.5 * errors[0, 1]
    assert errors[40, 3] <= errors[40, 1] + 1e-9


def test_restarts_pick_the_best_per_tile(gan_path):
    image, _ = _generated(gan_path, 1, 3)
    one = get_codec("gan-inversion", model=gan_path, steps=10, restarts=1, init="random", bits=6)
    three = get_codec("gan-inversion", model=gan_path, steps=10, restarts=3, init="random", bits=6)
    targets, _ = one._tiles(image)
    storage = one._storage_params()
    gen = one.loaded.generator

    def tile_errors(codec):
        z, colour = codec.invert(targets, storage)
        with torch.no_grad():
            tiles = apply_colour(gen(torch.from_numpy(codec._reconstruct(z, storage))), torch.from_numpy(colour))
            return (tiles - targets).pow(2).mean(dim=(1, 2, 3)).numpy()

    assert np.all(tile_errors(three) <= tile_errors(one) + 1e-7)


def test_search_objective_ssim_as_the_metrics_measure_it():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 24, 20, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    to_unit = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    ours = _ssim_per_item(to_unit(a), to_unit(b)).numpy()
    assert ours == pytest.approx([metrics.ssim(Image.fromarray(x), Image.fromarray(y)) for x, y in zip(a, b)], abs=1e-5)
    assert _ssim_per_item(to_unit(a), to_unit(a)).numpy() == pytest.approx([1.0, 1.0], abs=1e-6)


# One tile (the search's SSIM is the image's, as for a face on a 128-px domain GAN), and blended tiles (the search
# measures the blend). Edge-to-edge tiles are judged one by one, which on the tiny GAN's 8-px tiles is not the
# image's SSIM.
# With colour parameters, a single 8-px tile is nearly all colour: both searches end within 1 % of each other's MSE
# (on either side), so that case is the z-only search's.
@pytest.mark.parametrize("size,overlap,colour", [((8, 8), 0, "none"), ((24, 16), 2, "none"), ((24, 16), 2, "affine")])
def test_ssim_objective_buys_ssim_and_any_decoder_reads_its_files(gan_path, size, overlap, colour):
    image = _photo(*size)
    results = {}
    for objective in ["mse", "ssim"]:
        codec = get_codec("gan-inversion", model=gan_path, steps=40, objective=objective, overlap=overlap,
                          colour=colour)
        data = codec.encode(image)
        decoded = get_codec("gan-inversion", model=gan_path).decode(data)  # the objective is the encoder's alone
        assert np.array_equal(np.asarray(decoded), np.asarray(codec.decode(data)))
        results[objective] = (metrics.ssim(image, decoded), _mse(decoded, image), len(data))
    assert results["ssim"][0] > results["mse"][0]
    assert results["mse"][1] < results["ssim"][1]
    assert results["ssim"][2] == results["mse"][2]


@pytest.mark.parametrize("overlap", [0, 2])
def test_a_bfloat16_search_finds_latents_about_as_good(gan_path, overlap):
    image = _photo(24, 16)
    errors = {}
    for precision in ["float32", "bfloat16"]:
        codec = get_codec("gan-inversion", model=gan_path, steps=40, precision=precision, overlap=overlap)
        data = codec.encode(image)
        decoded = get_codec("gan-inversion", model=gan_path).decode(data)  # the decoder is float32 either way
        assert np.array_equal(np.asarray(decoded), np.asarray(codec.decode(data)))
        errors[precision] = _mse(decoded, image)
    start = _mse(get_codec("gan-inversion", model=gan_path, steps=0, overlap=overlap).decode(
        get_codec("gan-inversion", model=gan_path, steps=0, overlap=overlap).encode(image)), image)
    assert errors["bfloat16"] < start
    assert errors["bfloat16"] <= 1.05 * errors["float32"]
    with pytest.raises(ValueError, match="one of"):
        get_codec("gan-inversion", model=gan_path, precision="float16")


def test_encoding_is_deterministic_given_the_seed(gan_path):
    image = _photo(16, 8)
    make = lambda seed: get_codec("gan-inversion", model=gan_path, steps=5, init="random", seed=seed)  # noqa: E731
    assert make(1).encode(image) == make(1).encode(image)
    assert make(1).encode(image) != make(2).encode(image)


def test_uniform_quantization_clips_and_decodes_to_bin_centres(gan_path):
    z = np.array([-10.0, -3.0, -0.01, 0.0, 2.99, 3.0, 10.0])
    indices = quantize_uniform(z, bits=3, clip=3.0)
    assert indices.tolist() == [0, 0, 3, 4, 7, 7, 7]
    centres = dequantize_uniform(indices, bits=3, clip=3.0)
    assert np.allclose(centres, [-2.625, -2.625, -0.375, 0.375, 2.625, 2.625, 2.625])
    data = get_codec("gan-inversion", model=gan_path, steps=5, bits=3, init="random", colour="none").encode(
        _photo(8, 8))
    payload = unpack(data).payload
    assert len(payload) == LATENT * 3 // 8


def test_gaussian_entropy_coding_beats_fixed_length_on_prior_samples(gan_path):
    image = _photo(32, 32)  # 16 tiles
    fixed = get_codec("gan-inversion", model=gan_path, steps=0, init="random", bits=6)
    coded = get_codec("gan-inversion", model=gan_path, steps=0, init="random", bits=6, entropy="gaussian")
    fixed_data, coded_data = fixed.encode(image), coded.encode(image)
    assert len(unpack(coded_data).payload) < len(unpack(fixed_data).payload)
    params = inspect(coded_data)["params"]
    assert {k: params[k] for k in "bec"} == {"b": 6, "e": 1, "c": 3.0}
    assert abs(params["m"]) < 1 and 0.5 < params["s"] < 2  # the image's latent statistics (N(0,1) draws here)
    # same bin width; the Gaussian mode does not clip, so it reconstructs at least as well on N(0,1) draws
    assert np.asarray(coded.decode(coded_data)).shape == (32, 32, 3)


def test_gaussian_mode_codes_under_the_images_latent_statistics():
    from gencomp.codecs.inversion import GANInversionCodec as C

    rng = np.random.default_rng(0)
    z = (rng.normal(0.4, 2.5, size=(40, LATENT))).astype(np.float32)  # latents that drifted off N(0, 1)
    legacy = {"b": 6, "e": 1, "c": 3.0}  # files written before m and s existed: coded under N(0, 1)
    fitted = {**legacy, "m": float(np.float32(z.mean())), "s": float(np.float32(z.std()))}
    expected = C._reconstruct(z, legacy)
    sizes = {}
    for name, storage in (("legacy", legacy), ("fitted", fitted)):
        payload = C._serialize(z, storage)
        sizes[name] = len(payload)
        header_storage = C._storage_from_header(storage)
        np.testing.assert_array_equal(C._deserialize(payload, header_storage, z.shape), expected)
    assert sizes["fitted"] < 0.9 * sizes["legacy"]
    from gencomp.codecs.container import MalformedHeader

    for bad in ({**fitted, "s": 0.0}, {**fitted, "s": float("nan")}, {**fitted, "m": "x"}, {**legacy, "s": 1.0}):
        with pytest.raises(MalformedHeader):
            C._storage_from_header(bad)


def test_inversion_settings_are_validated(gan_path, vaegan_path):
    with pytest.raises(ValueError, match="entropy coding needs quantized"):
        get_codec("gan-inversion", model=gan_path, bits=32, entropy="gaussian")
    with pytest.raises(ValueError, match="bits must be"):
        get_codec("gan-inversion", model=gan_path, bits=13)
    with pytest.raises(ValueError, match="one of"):
        get_codec("gan-inversion", model=gan_path, init="zeros")
    with pytest.raises(ValueError, match="not found"):
        get_codec("gan-inversion", model=gan_path.parent / "missing.pt").encode(_photo(8, 8))
    with pytest.raises(ValueError, match="needs a 'gan' model"):
        get_codec("gan-inversion", model=vaegan_path).encode(_photo(8, 8))


@pytest.mark.parametrize("codec", ["gan-inversion", "vaegan"])
def test_device_setting(gan_path, vaegan_path, codec):
    model = gan_path if codec == "gan-inversion" else vaegan_path
    image = _photo(12, 8)
    extra = {"steps": 2} if codec == "gan-inversion" else {}
    cpu = get_codec(codec, model=model, **extra)
    assert cpu.device == "cpu"
    data = cpu.encode(image)
    auto = get_codec(codec, model=model, device="auto", **extra)
    assert auto.device == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():  # "auto" is the CPU here, so it is bit-exact with the reference
        assert auto.encode(image) == data
        np.testing.assert_array_equal(np.asarray(auto.decode(data)), np.asarray(cpu.decode(data)))
        with pytest.raises(ValueError, match="no CUDA GPU"):
            get_codec(codec, model=model, device="cuda")
    with pytest.raises(ValueError, match="one of"):
        get_codec(codec, model=model, device="tpu")


# -- VAE-GAN ---------------------------------------------------------------------------------------------------


def _latent_directly(vaegan_path, image: Image.Image, channels: int) -> torch.Tensor:
    loaded = load_model(vaegan_path)
    x = pad_to_multiple(np.asarray(image, dtype=np.float32) / 255.0, 4)
    with torch.no_grad():
        mu = loaded.model.encode(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None])
    return mu[:, :channels]


def _decode_directly(vaegan_path, latent: torch.Tensor, channels: int, size: tuple[int, int]) -> np.ndarray:
    with torch.no_grad():
        x = load_model(vaegan_path).model.decode(latent.float(), channels=channels)
    pixels = np.clip(x[0].permute(1, 2, 0).numpy() * 255 + 0.5, 0, 255).astype(np.uint8)
    return pixels[: size[1], : size[0]]


@pytest.mark.parametrize("channels", [4, 2])
def test_entropy_storage_equals_decoding_the_rounded_latent(vaegan_path, channels):
    image = _photo(22, 13)  # padded to 24 x 16
    codec = get_codec("vaegan", model=vaegan_path, channels=channels, refine_steps=0)
    data = codec.encode(image)
    assert inspect(data)["params"] == {"c": channels, "s": 0}
    mu = _latent_directly(vaegan_path, image, channels)
    expected = _decode_directly(vaegan_path, torch.round(mu / 0.25) * 0.25, channels, image.size)
    decoded = codec.decode(data)
    assert decoded.size == image.size
    assert np.array_equal(np.asarray(decoded), expected)


def test_quant_scale_trades_rate_for_fidelity(vaegan_path):
    image = _photo(48, 32)
    mu = _latent_directly(vaegan_path, image, 4)
    sizes, errors = [], []
    for scale in (0.25, 1.0, 4.0):
        codec = get_codec("vaegan", model=vaegan_path, channels=4, quant_scale=scale, refine_steps=0)
        data = codec.encode(image)
        params = inspect(data)["params"]
        assert params.get("q", 1.0) == scale and ("q" in params) == (scale != 1.0)  # s = 1 writes nothing new
        step = 0.25 * scale
        expected = _decode_directly(vaegan_path, torch.round(mu / step) * step, 4, image.size)
        assert np.array_equal(np.asarray(decode_file(data, model=vaegan_path)), expected)
        sizes.append(len(unpack(data).payload))
        latent, _, _ = codec.latent_from_container(data)
        errors.append(float(np.abs(latent - mu[0].numpy()).max()))
    assert sizes[0] > sizes[1] > sizes[2]  # finer steps cost more bits ...
    assert errors[0] < errors[1] < errors[2]  # ... and keep the latent closer to the encoder's
    for bad in ({"quant_scale": 0.0}, {"quant_scale": 100.0}, {"quant_scale": 0.5, "storage": "raw"}):
        with pytest.raises(ValueError, match="quant_scale"):
            get_codec("vaegan", model=vaegan_path, **bad)


def test_quant_scale_in_a_header_is_validated(vaegan_path):
    from gencomp.codecs.container import MalformedHeader, pack

    codec = get_codec("vaegan", model=vaegan_path, channels=4, quant_scale=0.5)
    container = unpack(codec.encode(_photo(16, 16)))
    for params in ({"c": 4, "s": 0, "q": 0.0}, {"c": 4, "s": 0, "q": 1000.0}, {"c": 4, "s": 32, "q": 0.5}):
        forged = pack(codec_id=container.codec_id, width=16, height=16, payload=container.payload,
                      fingerprint=container.fingerprint, params=params)
        with pytest.raises(MalformedHeader):
            codec.decode(forged)


@pytest.mark.parametrize("raw_bits,dtype", [(32, torch.float32), (16, torch.float16)])
def test_raw_storage(vaegan_path, raw_bits, dtype):
    image = _photo(16, 16)
    data = get_codec("vaegan", model=vaegan_path, storage="raw", raw_bits=raw_bits, refine_steps=0).encode(image)
    assert len(unpack(data).payload) == 4 * 4 * 4 * raw_bits // 8  # 4 channels x 4 x 4 latent
    mu = _latent_directly(vaegan_path, image, 4)
    expected = _decode_directly(vaegan_path, mu.to(dtype), 4, image.size)
    assert np.array_equal(np.asarray(decode_file(data, model=vaegan_path)), expected)


def test_fixed_channel_names_share_the_bitstream(vaegan_path):
    image = _photo(16, 16)
    data = get_codec("vaegan-c2", model=vaegan_path).encode(image)
    assert inspect(data)["codec"] == "vaegan-c2" and inspect(data)["params"]["c"] == 2
    assert unpack(data).payload == unpack(get_codec("vaegan", model=vaegan_path, channels=2).encode(image)).payload
    generic = get_codec("vaegan", model=vaegan_path).decode(data)
    assert np.array_equal(np.asarray(generic), np.asarray(get_codec("vaegan-c2", model=vaegan_path).decode(data)))
    fewer = get_codec("vaegan", model=vaegan_path, channels=2).encode(image)
    more = get_codec("vaegan", model=vaegan_path, channels=4).encode(image)
    assert len(unpack(fewer).payload) < len(unpack(more).payload)


def test_channels_must_be_trained(vaegan_path):
    with pytest.raises(ValueError, match="trained for channels"):
        get_codec("vaegan", model=vaegan_path, channels=3).encode(_photo(8, 8))
    with pytest.raises(ValueError, match="trained for channels"):
        get_codec("vaegan-c8", model=vaegan_path).encode(_photo(8, 8))


def test_default_model_from_environment(vaegan_path, monkeypatch):
    monkeypatch.setenv("GENCOMP_VAEGAN_MODEL", str(vaegan_path))
    data = get_codec("vaegan").encode(_photo(8, 8))
    assert decode_file(data).size == (8, 8)


def test_decoding_is_identical_in_another_process(gan_path, vaegan_path, tmp_path):
    image = _photo(20, 12)
    files = {
        "gan": (get_codec("gan-inversion", model=gan_path, steps=3, bits=6, entropy="gaussian").encode(image), gan_path),
        "vaegan": (get_codec("vaegan", model=vaegan_path).encode(image), vaegan_path),
    }
    here = {}
    for name, (data, model) in files.items():
        (tmp_path / f"{name}.gcz").write_bytes(data)
        here[name] = hashlib.sha256(np.asarray(decode_file(data, model=model)).tobytes()).hexdigest()
    script = textwrap.dedent(
        f"""
        import hashlib, sys
        import numpy as np
        from gencomp.codecs import decode_file
        for name, model in [("gan", {str(gan_path)!r}), ("vaegan", {str(vaegan_path)!r})]:
            data = open({str(tmp_path)!r} + f"/{{name}}.gcz", "rb").read()
            print(name, hashlib.sha256(np.asarray(decode_file(data, model=model)).tobytes()).hexdigest())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    there = dict(line.split() for line in result.stdout.strip().splitlines())
    assert there == here
