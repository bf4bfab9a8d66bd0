import math

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_msssim import ms_ssim as library_ms_ssim
from pytorch_msssim import ssim as library_ssim

from gencomp import metrics


def _random_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth-ish content so SSIM is not degenerate: a gradient plus noise
    yy, xx = np.mgrid[0:height, 0:width]
    base = (xx * 255 // max(width - 1, 1) + yy * 128 // max(height - 1, 1)) % 256
    noise = rng.integers(-20, 21, size=(height, width, 3))
    return np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)


def _noisy(arr: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(arr.astype(np.float64) + rng.normal(0, sigma, arr.shape), 0, 255).round().astype(np.uint8)


def test_identical_images():
    arr = _random_image(64, 48)
    assert metrics.psnr(arr, arr) == math.inf
    assert metrics.ssim(arr, arr) == pytest.approx(1.0, abs=1e-9)
    assert metrics.ms_ssim(arr, arr) == pytest.approx(1.0, abs=1e-9)


def test_psnr_known_mse():
    a = np.zeros((10, 20, 3), dtype=np.uint8)
    b = a.copy()
    b[..., 0] = 3  # every red value off by 3: MSE = 9 / 3 = 3
    assert metrics.mse(a, b) == pytest.approx(3.0)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 3.0))
    # one pixel off by 255 of 200*3 values: MSE = 255^2 / 600 -> PSNR = 10 log10(600)
    c = a.copy()
    c[0, 0, 0] = 255
    assert metrics.psnr(a, c) == pytest.approx(10 * math.log10(600.0))


def test_pil_and_array_inputs_agree():
    arr = _random_image(40, 30)
    other = _noisy(arr, 10)
    assert metrics.psnr(Image.fromarray(arr), Image.fromarray(other)) == metrics.psnr(arr, other)
    assert metrics.ssim(Image.fromarray(arr), Image.fromarray(other)) == pytest.approx(
        metrics.ssim(arr, other)
    )


def test_ssim_matches_pytorch_msssim_on_0_255():
    arr = _random_image(96, 80)
    other = _noisy(arr, 12)
    x = torch.from_numpy(arr.transpose(2, 0, 1)).float().unsqueeze(0)
    y = torch.from_numpy(other.transpose(2, 0, 1)).float().unsqueeze(0)
    expected = float(library_ssim(x, y, data_range=255))
    assert metrics.ssim(arr, other) == pytest.approx(expected, abs=1e-5)
    assert 0.0 < metrics.ssim(arr, other) < 1.0


def test_ms_ssim_matches_library_above_160_px():
    arr = _random_image(176, 168)
    other = _noisy(arr, 15)
    x = torch.from_numpy(arr.transpose(2, 0, 1)).float().unsqueeze(0)
    y = torch.from_numpy(other.transpose(2, 0, 1)).float().unsqueeze(0)
    expected = float(library_ms_ssim(x, y, data_range=255))
    assert metrics.ms_ssim_scales(176, 168) == 5
    assert metrics.ms_ssim(arr, other) == pytest.approx(expected, abs=1e-5)


def test_ms_ssim_scale_count():
    assert metrics.ms_ssim_scales(161, 500) == 5
    assert metrics.ms_ssim_scales(160, 500) == 4
    assert metrics.ms_ssim_scales(81, 81) == 4
    assert metrics.ms_ssim_scales(80, 81) == 3
    assert metrics.ms_ssim_scales(21, 900) == 2
    assert metrics.ms_ssim_scales(20, 20) == 1
    assert metrics.ms_ssim_scales(3, 3) == 1


@pytest.mark.parametrize("size", [(100, 64), (32, 32), (12, 40), (5, 7), (1, 1)])
def test_ms_ssim_small_images_do_not_crash(size):
    arr = _random_image(*size)
    other = _noisy(arr, 20)
    value = metrics.ms_ssim(arr, other)
    assert math.isfinite(value)
    assert 0.0 <= value <= 1.0
    assert metrics.ms_ssim(arr, arr) == pytest.approx(1.0, abs=1e-9)
    assert math.isfinite(metrics.ssim(arr, other))


def test_ms_ssim_few_scales_equals_ssim_product_definition_at_one_scale():
    # with one scale MS-SSIM is SSIM itself (weight renormalised to 1, relu of a positive value)
    arr = _random_image(20, 20)
    other = _noisy(arr, 8)
    assert metrics.ms_ssim_scales(20, 20) == 1
    assert metrics.ms_ssim(arr, other) == pytest.approx(metrics.ssim(arr, other), abs=1e-12)


def test_ms_ssim_decreases_with_noise():
    arr = _random_image(64, 64)
    light, heavy = metrics.ms_ssim(arr, _noisy(arr, 5)), metrics.ms_ssim(arr, _noisy(arr, 40))
    assert 1.0 > light > heavy


def test_bpp_and_cr():
    assert metrics.bpp(1000, 100, 80) == pytest.approx(1.0)
    assert metrics.bpp(0, 10, 10) == 0.0
    assert metrics.compression_ratio(1.0) == pytest.approx(24.0)
    assert metrics.compression_ratio(0.25) == pytest.approx(96.0)
    assert metrics.compression_ratio(0.0) == math.inf
    with pytest.raises(ValueError):
        metrics.bpp(10, 0, 5)


def test_ms_ssim_db():
    assert metrics.ms_ssim_db(0.9) == pytest.approx(10.0)
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert metrics.ms_ssim_db(1.0) == math.inf


def test_shape_mismatch_and_bad_input_raise():
    with pytest.raises(ValueError, match="reconstruction is"):
        metrics.psnr(_random_image(10, 10), _random_image(11, 10))
    with pytest.raises(ValueError, match="RGB"):
        metrics.psnr(Image.new("L", (4, 4)), Image.new("L", (4, 4)))
    with pytest.raises(ValueError, match="uint8"):
        metrics.ssim(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32))
