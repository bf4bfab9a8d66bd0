"""The periodic-artefact measure (gencomp/grid_artifacts.py) on images whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gencomp.grid_artifacts import grid_pattern


def _natural(size: int = 512, seed: int = 0) -> np.ndarray:
    """A 1/f-spectrum random image: no frequency stands out, like a photo's spectrum."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size)
    field = np.real(np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((size, size)))))
    field = (field - field.mean()) / field.std()
    return np.clip(128 + 40 * field, 0, 255)[..., None].repeat(3, axis=2).astype(np.uint8)


def _seams(image: np.ndarray, period: int, amplitude: float) -> np.ndarray:
    """The first row and column of every period x period tile off by ``amplitude`` grey levels: what
    independently coded tiles leave (for period 2, a sub-pixel phase pattern)."""
    yy, xx = np.mgrid[0: image.shape[0], 0: image.shape[1]]
    pattern = amplitude * (((yy % period) == 0) | ((xx % period) == 0))
    return np.clip(image + pattern[..., None], 0, 255).astype(np.uint8)


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape[:2])[..., None]
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_a_perfect_reconstruction_has_no_pattern():
    image = _natural()
    found = grid_pattern(image, image, 16)
    assert found.amplitude == 0.0 and found.pattern == 0.0


@pytest.mark.parametrize("period", [2, 16, 64])
def test_faint_seams_under_stronger_noise_are_found(period):
    image = _natural(seed=1)
    damaged = _seams(_noisy(image, 6.0), period, amplitude=4.0)  # seams 4 grey levels, noise 6 levels RMS
    found = grid_pattern(image, damaged, period)
    assert found.pattern > 0.5


@pytest.mark.parametrize("period", [2, 16, 64])
def test_noise_and_blur_are_not_grid_patterns(period):
    image = _natural(seed=2)
    blurred = np.asarray(Image.fromarray(image).resize((256, 256)).resize((512, 512), Image.Resampling.BICUBIC))
    for reconstruction in (_noisy(image, 8.0, seed=period), blurred):
        found = grid_pattern(image, reconstruction, period)
        # pattern-free error: what survives the phase averages is chance, and chance is removed
        assert found.pattern < 0.3, found


def test_a_pattern_in_the_original_is_not_held_against_the_reconstruction():
    patterned = _seams(_natural(seed=3), 16, amplitude=6.0)
    assert grid_pattern(patterned, patterned, 16).amplitude == 0.0


def test_bad_inputs_are_refused():
    image = _natural()
    with pytest.raises(ValueError, match="too small"):
        grid_pattern(image[:200, :200], image[:200, :200], 64)
    with pytest.raises(ValueError, match="period"):
        grid_pattern(image, image, 1)
    with pytest.raises(ValueError, match="reconstruction is"):
        grid_pattern(image, image[:256], 16)


def test_the_shipped_vaegan_leaves_no_pattern_on_its_grids():
    """kodim04 (256x256 crop, released for unrestricted use) through the shipped VAE-GAN at 28 channels: the
    repeating part of its error on the 4-px grid of the sub-pixel stages and on the 16-px latent grid. The first
    shipped model (plain sub-pixel decoder) left 0.97 and 1.16 grey levels there on this crop (1.28 / 1.74 on
    Kodak); the blurred decoder 0.07 / 0.07, about what WebP and AVIF leave (BENCHMARKS.md)."""
    from pathlib import Path

    from gencomp.codecs import get_codec

    image = Image.open(Path(__file__).parent / "fixtures" / "kodim04-crop256.png").convert("RGB")
    codec = get_codec("vaegan", channels=28, refine_steps=0)
    decoded = codec.decode(codec.encode(image))
    for period in (4, 16):
        assert grid_pattern(image, decoded, period).pattern < 0.4, period
