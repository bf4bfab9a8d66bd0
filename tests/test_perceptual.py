"""Perceptual measures: ideal values, the ranking of blur against other distortions at equal PSNR, and values
against the published reference implementations on fixed inputs.

Reference numbers (hard-coded below) were computed on the inputs of :func:`_inputs` with:
- HaarPSI: ``haar_psi_numpy`` of haarPsi.py in github.com/rgcda/haarpsi (commit 2c27931, the authors' Python);
- GMSD: the authors' GMSD.m, and VIF: vifp_mscale.m (LIVE, UT Austin), both run in GNU Octave 7.3.0 with the
  image package 2.14.0 on the luma planes ``0.299 R + 0.587 G + 0.114 B`` (float64) of the same inputs;
- SWD: metrics/sliced_wasserstein.py of github.com/tkarras/progressive_growing_of_gans (commit 2504c3f):
  ``generate_laplacian_pyramid``, ``get_descriptors_for_minibatch``, ``finalize_descriptors`` and
  ``sliced_wasserstein`` x 1e3, averaged over levels, with its ``np.random`` draws (patch places and directions)
  replaced by ours (``patch_places``, ``swd_directions``), so that the two compute on the same samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image
from skimage import data

from gencomp import metrics, perceptual


def _pattern(shape, amplitude):
    # seedless pseudo-noise: the reference numbers below must not depend on a random generator's version
    idx = np.indices(shape)
    mix = sum(w * i for w, i in zip((7919, 104729, 3571), idx))
    return (mix % (2 * amplitude + 1)) - amplitude


def _inputs():
    astro = data.astronaut()[100:196, 150:278].copy()  # 96 x 128 x 3
    cam = data.camera()[200:296, 100:228].copy()  # 96 x 128 grey
    astro_noisy = np.clip(astro.astype(np.int64) + _pattern(astro.shape, 20), 0, 255).astype(np.uint8)
    padded = np.pad(astro.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="edge")
    box = sum(padded[i : i + 96, j : j + 128] for i in range(3) for j in range(3)) / 9
    astro_blur = np.round(box).astype(np.uint8)
    cam_noisy = np.clip(cam.astype(np.int64) + _pattern(cam.shape, 30), 0, 255).astype(np.uint8)
    return astro, astro_noisy, astro_blur, cam, cam_noisy


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


@pytest.fixture(scope="module")
def inputs():
    return _inputs()


def _photo(size=128, top=50, left=100) -> np.ndarray:
    return data.astronaut()[top : top + size, left : left + size].copy()


# ---------------------------------------------------------------- ideal values


def test_identical_images_give_the_ideal_values():
    image = _photo()
    assert perceptual.haarpsi(image, image) == pytest.approx(1.0, abs=1e-12)
    assert perceptual.gmsd(image, image) == 0.0
    assert perceptual.vif(image, image) == pytest.approx(1.0, abs=1e-9)  # the reference's 1e-10 clamp
    assert perceptual.swd(image, image) == 0.0
    descriptors = perceptual.swd_descriptors(image)
    assert perceptual.swd_sets([descriptors] * 3, [descriptors] * 3) == 0.0


def test_one_level_off_is_nearly_ideal_and_a_real_distortion_is_not():
    image = _photo()
    nudged = image.copy()
    nudged[::7, ::5, 1] ^= 1  # one grey level on a few pixels
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    assert 0.99 < perceptual.haarpsi(image, nudged) < 1.0 and perceptual.haarpsi(image, noisy) < 0.95
    assert 0.0 < perceptual.gmsd(image, nudged) < 0.005 < perceptual.gmsd(image, noisy)
    assert 0.95 < perceptual.vif(image, nudged) < 1.0 and perceptual.vif(image, noisy) < 0.8
    assert 0.0 < perceptual.swd(image, nudged) < perceptual.swd(image, noisy)


# ---------------------------------------------------------------- reference implementations


def test_haarpsi_matches_the_authors_implementation(inputs):
    astro, astro_noisy, astro_blur, cam, cam_noisy = inputs
    assert perceptual.haarpsi(astro, astro_noisy) == pytest.approx(0.937821432001413, rel=1e-12)
    assert perceptual.haarpsi(astro, astro_blur) == pytest.approx(0.9384289194110846, rel=1e-12)
    # odd sizes (the 2x2 mean pads the last row and column with zeros) and the grey path
    assert perceptual.haarpsi(astro[:95, :127], astro_noisy[:95, :127]) == pytest.approx(
        0.9409888179970453, rel=1e-12
    )
    grey = perceptual.haarpsi_planes(cam.astype(np.float64), cam_noisy.astype(np.float64))
    assert grey == pytest.approx(0.5434828114043047, rel=1e-12)


def test_gmsd_matches_the_authors_matlab_code(inputs):
    astro, astro_noisy, astro_blur, cam, cam_noisy = inputs
    y = _luma(astro)
    assert perceptual.gmsd_planes(y, _luma(astro_noisy)) == pytest.approx(0.015131253032978064, rel=1e-10)
    assert perceptual.gmsd_planes(y, _luma(astro_blur)) == pytest.approx(0.033450657867927544, rel=1e-10)
    assert perceptual.gmsd_planes(y[:95, :127], _luma(astro_noisy)[:95, :127]) == pytest.approx(
        0.015111285500834451, rel=1e-10
    )
    assert perceptual.gmsd_planes(cam.astype(float), cam_noisy.astype(float)) == pytest.approx(
        0.075879692655668879, rel=1e-10
    )
    # the RGB entry point works on that luma
    assert perceptual.gmsd(astro, astro_noisy) == perceptual.gmsd_planes(y, _luma(astro_noisy))


def test_vif_matches_the_authors_matlab_code(inputs):
    astro, astro_noisy, astro_blur, cam, cam_noisy = inputs
    y = _luma(astro)
    assert perceptual.vif_planes(y, _luma(astro_noisy)) == pytest.approx(0.47951170556236816, rel=1e-10)
    assert perceptual.vif_planes(y, _luma(astro_blur)) == pytest.approx(0.59497640969076493, rel=1e-10)
    assert perceptual.vif_planes(y[:95, :127], _luma(astro_noisy)[:95, :127]) == pytest.approx(
        0.48041101685065052, rel=1e-10
    )
    assert perceptual.vif_planes(cam.astype(float), cam_noisy.astype(float)) == pytest.approx(
        0.17515128878983335, rel=1e-10
    )
    assert perceptual.vif_planes(y, y) == pytest.approx(0.9999999999906467, rel=1e-12)
    assert perceptual.vif(astro, astro_blur) == perceptual.vif_planes(y, _luma(astro_blur))


def test_swd_matches_the_progressive_gan_code_on_the_same_draws(inputs):
    astro, astro_noisy, astro_blur, _, _ = inputs

    def ours(a, b):
        return perceptual.swd_per_level(
            [perceptual.swd_descriptors(a, dtype=np.float32)], [perceptual.swd_descriptors(b, dtype=np.float32)]
        )

    # 96 x 128: levels at 96, 48 and 24 px; the reference computes in float32
    assert ours(astro, astro_noisy) == pytest.approx([237.99994, 32.564415, 8.484529], rel=1e-5)
    assert ours(astro, astro_blur) == pytest.approx([114.63198, 48.935593, 8.254514], rel=1e-5)
    assert float(np.mean(ours(astro, astro_noisy))) == pytest.approx(93.01629638671875, rel=1e-5)
    # descriptors kept in half precision move the result by about 1e-4 of its value
    assert perceptual.swd(astro, astro_noisy) == pytest.approx(93.01629638671875, rel=1e-3)
    assert perceptual.swd(astro, astro_blur) == pytest.approx(57.27402877807617, rel=1e-3)


# ---------------------------------------------------------------- rankings at equal PSNR


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    smooth = scipy.ndimage.gaussian_filter(image.astype(np.float64), (sigma, sigma, 0), mode="nearest")
    return np.clip(np.round(smooth), 0, 255).astype(np.uint8)


ORIGINAL = _photo(192, 20, 150)


def _equal_psnr_pair(sigma_blur: float, distort) -> tuple[np.ndarray, np.ndarray, float, float]:
    blurred = _blurred(ORIGINAL, sigma_blur)
    target = metrics.psnr(ORIGINAL, blurred)
    low, high = 0.0, 100.0
    for _ in range(40):
        mid = (low + high) / 2
        if metrics.psnr(ORIGINAL, distort(mid)) > target:
            low = mid
        else:
            high = mid
    other = distort((low + high) / 2)
    return blurred, other, target, metrics.psnr(ORIGINAL, other)


@pytest.mark.parametrize("sigma_blur", [1.0, 2.0])
def test_blur_ranks_below_sharp_noise_at_equal_psnr(sigma_blur):
    noise = np.random.default_rng(7).standard_normal(ORIGINAL.shape)

    def noisy(strength):
        return np.clip(np.round(ORIGINAL + strength * noise), 0, 255).astype(np.uint8)

    blurred, sharp, psnr_blur, psnr_sharp = _equal_psnr_pair(sigma_blur, noisy)
    assert abs(psnr_blur - psnr_sharp) < 0.1
    assert perceptual.haarpsi(ORIGINAL, blurred) < perceptual.haarpsi(ORIGINAL, sharp)
    assert perceptual.gmsd(ORIGINAL, blurred) > perceptual.gmsd(ORIGINAL, sharp)  # lower is better
    assert perceptual.vif(ORIGINAL, blurred) < perceptual.vif(ORIGINAL, sharp)


@pytest.mark.parametrize("shift", [1, 2])
def test_swd_prefers_a_sharp_misaligned_reconstruction_to_a_blurred_one_at_equal_psnr(shift):
    # White noise changes the statistics of every patch (SWD measures realism, not fidelity, and ranks noise
    # below mild blur); the distortion of a generative decoder is closer to a sharp image that is off by a
    # little, which keeps the patch distribution. At equal PSNR that must beat blur.
    shifted = np.pad(ORIGINAL, ((0, 0), (shift, 0), (0, 0)), mode="edge")[:, : ORIGINAL.shape[1]]
    target = metrics.psnr(ORIGINAL, shifted)
    low, high = 0.1, 30.0
    for _ in range(40):
        mid = (low + high) / 2
        if metrics.psnr(ORIGINAL, _blurred(ORIGINAL, mid)) > target:
            low = mid
        else:
            high = mid
    blurred = _blurred(ORIGINAL, (low + high) / 2)
    assert abs(metrics.psnr(ORIGINAL, blurred) - target) < 0.1
    assert perceptual.swd(ORIGINAL, blurred) > 1.2 * perceptual.swd(ORIGINAL, shifted)
    assert perceptual.haarpsi(ORIGINAL, blurred) < perceptual.haarpsi(ORIGINAL, shifted)


# ---------------------------------------------------------------- SWD machinery


@pytest.mark.parametrize("size", [(64, 64), (97, 61), (40, 33)])
def test_laplacian_pyramid_reconstructs_the_image(size):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (3, *size)).astype(np.float32)
    levels = perceptual.laplacian_pyramid(image, 4)
    assert [lvl.shape[1:] for lvl in levels][0] == size
    rebuilt = levels[-1]
    for band in levels[-2::-1]:
        rebuilt = perceptual.pyr_up(rebuilt, band.shape[1:]) + band
    np.testing.assert_allclose(rebuilt, image, atol=1e-3)


def test_pyramid_depth_rule():
    assert perceptual.swd_levels(768, 512) == 4  # capped: bands at 1, 1/2, 1/4 and the 1/8 residual
    assert perceptual.swd_levels(128, 128) == 4  # 128, 64, 32, 16: the paper's levels at 128 px
    assert perceptual.swd_levels(96, 128) == 3  # 96, 48, 24
    assert perceptual.swd_levels(40, 32) == 2
    assert perceptual.swd_levels(12, 40) == 1
    assert perceptual.swd_levels(6, 40) == 0


def test_descriptors_are_deterministic_and_paired():
    image = _photo(96)
    first, second = perceptual.swd_descriptors(image), perceptual.swd_descriptors(image.copy())
    assert first.dtype == np.float16 and first.shape == (3, 128, 3, 7, 7)
    assert np.array_equal(first, second)
    # the descriptor of patch n at level 0 is the 7x7 neighbourhood at the drawn centre (channel, column, row)
    ys, xs = perceptual.patch_places(0, 96, 96)
    band = perceptual.laplacian_pyramid(image.astype(np.float32).transpose(2, 0, 1), 3)[0]
    n = 5
    expected = band[:, ys[n] - 3 : ys[n] + 4, xs[n] - 3 : xs[n] + 4].transpose(0, 2, 1)
    np.testing.assert_allclose(first[0, n].astype(np.float32), expected, rtol=1e-3, atol=0.05)


def test_swd_sets_pool_images_and_check_shapes():
    a, b = _photo(96, 0, 0), _photo(96, 200, 200)
    da, db = perceptual.swd_descriptors(a), perceptual.swd_descriptors(b)
    dab = perceptual.swd_descriptors(_blurred(a, 1.5))
    dbb = perceptual.swd_descriptors(_blurred(b, 1.5))
    pooled = perceptual.swd_sets([da, db], [dab, dbb])
    assert pooled > 0 and math.isfinite(pooled)
    # order of the images in the set does not matter up to sorting ties
    assert perceptual.swd_sets([db, da], [dbb, dab]) == pytest.approx(pooled, rel=1e-9)
    # a set mixing depths pools each level over the images that have it
    small = perceptual.swd_descriptors(_photo(40))
    assert small.shape[0] == 2
    assert math.isfinite(perceptual.swd_sets([da, small], [dab, small]))
    with pytest.raises(ValueError, match="differ"):
        perceptual.swd_sets([da], [small])
    with pytest.raises(ValueError, match="originals"):
        perceptual.swd_sets([da, db], [dab])


def test_descriptor_files_round_trip(tmp_path):
    image = _photo(64)
    path = perceptual.descriptors_path(tmp_path / "units" / "ab" / "abcdef.json")
    assert path.name == "abcdef.swd.npz"
    assert perceptual.load_descriptors(path) is None
    stored = perceptual.cached_descriptors(image, path)
    assert path.exists() and np.array_equal(perceptual.load_descriptors(path), stored)
    path.write_bytes(b"not an array")
    assert perceptual.load_descriptors(path) is None
    assert np.array_equal(perceptual.cached_descriptors(image, path), stored)  # rewritten


# ---------------------------------------------------------------- edge cases and the metrics module


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (12, 40), (40, 32), (41, 41)])
def test_small_images_do_not_crash(size):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    other = np.clip(image.astype(int) + rng.integers(-9, 10, image.shape), 0, 255).astype(np.uint8)
    assert 0.0 < perceptual.haarpsi(image, other) <= 1.0
    assert math.isfinite(perceptual.gmsd(image, other))
    value = perceptual.vif(image, other)
    assert math.isnan(value) if min(size) < 17 else 0.0 < value < 1.0
    value = perceptual.swd(image, other)
    assert math.isnan(value) if min(size) < 7 else value > 0


def test_flat_images():
    black = np.zeros((48, 64, 3), np.uint8)
    grey = np.full((48, 64, 3), 128, np.uint8)
    assert perceptual.haarpsi(black, black) == 1.0
    assert perceptual.gmsd(grey, grey) == 0.0
    assert math.isnan(perceptual.vif(grey, grey))  # no information in the reference: 0 / 0, as the reference
    assert perceptual.swd(grey, grey) == 0.0


def test_metrics_wrappers_accept_pil_and_validate():
    a = _photo(64)
    b = _blurred(a, 1.0)
    assert metrics.haarpsi(Image.fromarray(a), Image.fromarray(b)) == perceptual.haarpsi(a, b)
    assert metrics.swd(a, b) == perceptual.swd(a, b)
    values = metrics.all_metrics(a, b)
    assert set(values) == {"psnr", "ssim", "ms_ssim", "haarpsi", "gmsd", "vif"}
    assert values["gmsd"] == perceptual.gmsd(a, b) and values["vif"] == perceptual.vif(a, b)
    assert metrics.HIGHER_IS_BETTER["haarpsi"] and not metrics.HIGHER_IS_BETTER["gmsd"]
    with pytest.raises(ValueError, match="reconstruction is"):
        metrics.gmsd(a, a[:-1])
    with pytest.raises(ValueError, match="uint8"):
        metrics.vif(a.astype(np.float32), a.astype(np.float32))
