import math

import numpy as np
import pytest

from gencomp.bdrate import METHODS, NoOverlapError, bd_psnr, bd_quality, bd_rate

# A realistic anchor curve (JPEG-like on Kodak): bpp and PSNR
ANCHOR_BPP = [0.25, 0.5, 1.0, 1.5, 2.2]
ANCHOR_PSNR = [24.9, 29.0, 32.7, 34.6, 36.4]


@pytest.mark.parametrize("method", METHODS)
def test_halved_rates_give_minus_50_percent(method):
    test_bpp = [r / 2 for r in ANCHOR_BPP]
    assert bd_rate(ANCHOR_BPP, ANCHOR_PSNR, test_bpp, ANCHOR_PSNR, method=method) == pytest.approx(
        -50.0, abs=1e-9
    )
    # and the anchor against the test: twice the bits
    assert bd_rate(test_bpp, ANCHOR_PSNR, ANCHOR_BPP, ANCHOR_PSNR, method=method) == pytest.approx(
        100.0, abs=1e-9
    )


@pytest.mark.parametrize("method", METHODS)
def test_same_curve_is_zero(method):
    assert bd_rate(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP, ANCHOR_PSNR, method=method) == pytest.approx(
        0.0, abs=1e-12
    )
    assert bd_quality(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP, ANCHOR_PSNR, method=method) == pytest.approx(
        0.0, abs=1e-12
    )


@pytest.mark.parametrize("method", METHODS)
def test_hand_worked_linear_curves(method):
    # Worked by hand. Anchor: ln R = (p - 30) / 5; test: ln R = (p - 30) / 4; both sampled at p = 30, 33, 36, 40.
    # All fits reproduce straight lines exactly.
    # BD-rate: mean over p in [30, 40] of (p - 30)(1/4 - 1/5) = (1/20) * 5 = 0.25 -> 100 (e^0.25 - 1) = 28.4025 %
    # BD-PSNR: with x = ln R, anchor p = 30 + 5x on x in [0, 2], test p = 30 + 4x on x in [0, 2.5];
    #          over the shared x in [0, 2] the mean of (4x - 5x) is -1 dB.
    psnr = np.array([30.0, 33.0, 36.0, 40.0])
    anchor_rate = np.exp((psnr - 30) / 5)
    test_rate = np.exp((psnr - 30) / 4)
    assert bd_rate(anchor_rate, psnr, test_rate, psnr, method=method) == pytest.approx(
        28.402541668774, rel=1e-9
    )
    assert bd_psnr(anchor_rate, psnr, test_rate, psnr, method=method) == pytest.approx(-1.0, abs=1e-9)


def test_hand_worked_quadratic_cubic_fit():
    # Anchor ln R = q^2 / 10, test ln R = q^2 / 20 with q = PSNR - 30 at q = 0, 3, 7, 10. A cubic fit through four
    # points of a parabola is the parabola, so the mean log-rate difference over q in [0, 10] is
    # -(1/20) * mean(q^2) = -(1/20) * (100 / 3) = -5/3 and BD-rate = 100 (e^(-5/3) - 1) = -81.1124 %.
    q = np.array([0.0, 3.0, 7.0, 10.0])
    bd = bd_rate(np.exp(q**2 / 10), 30 + q, np.exp(q**2 / 20), 30 + q, method="cubic")
    assert bd == pytest.approx(100 * (math.exp(-5 / 3) - 1), rel=1e-9)
    assert bd == pytest.approx(-81.1124, abs=1e-4)


def test_overlap_only_is_used():
    # test curve: the anchor shifted to half the rate, but only over its upper half of quality. The overlapping
    # range is the test's range, and there the saving is still exactly 50 %.
    psnr = np.array([30.0, 32.0, 34.0, 36.0, 38.0, 40.0])
    anchor_rate = np.exp((psnr - 30) / 5)
    test_psnr = np.array([35.0, 36.5, 38.0, 39.0, 45.0])
    test_rate = np.exp((test_psnr - 30) / 5) / 2
    assert bd_rate(anchor_rate, psnr, test_rate, test_psnr, method="pchip") == pytest.approx(-50.0, abs=1e-9)


def test_unsorted_points_are_accepted():
    order = [3, 0, 4, 1, 2]
    bpp = [ANCHOR_BPP[i] for i in order]
    psnr = [ANCHOR_PSNR[i] for i in order]
    for method in METHODS:
        assert bd_rate(ANCHOR_BPP, ANCHOR_PSNR, [r / 2 for r in bpp], psnr, method=method) == pytest.approx(
            -50.0
        )


def test_no_overlap_raises():
    with pytest.raises(NoOverlapError, match="no overlapping quality range"):
        bd_rate([0.1, 0.2, 0.3, 0.4], [20, 21, 22, 23], [1, 2, 3, 4], [30, 31, 32, 33])
    with pytest.raises(NoOverlapError, match="log-rate"):
        bd_quality([0.1, 0.2, 0.3, 0.4], [20, 21, 22, 23], [1, 2, 3, 4], [30, 31, 32, 33])


def test_bad_input_raises_clearly():
    with pytest.raises(ValueError, match="at least 4 points"):
        bd_rate([1, 2, 3], [30, 31, 32], [1, 2, 3], [30, 31, 32], method="cubic")
    assert bd_rate([1, 2], [30, 31], [0.5, 1], [30, 31], method="pchip") == pytest.approx(-50.0)
    with pytest.raises(ValueError, match="positive"):
        bd_rate([0, 1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="finite"):
        bd_rate([1, 2, 3, 4], [1, 2, 3, math.inf], [1, 2, 3, 4], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_rate([1, 2], [1, 2], [1, 2], [1, 2], method="spline")
    with pytest.raises(ValueError, match="3 rates but 2"):
        bd_rate([1, 2, 3], [1, 2], [1, 2], [1, 2], method="pchip")


@pytest.mark.parametrize("method", METHODS)
def test_lower_is_better_quality(method):
    # GMSD-like axis: quality falls as the rate grows. Test = anchor at half the rate: BD-rate is -50 % as for
    # any axis; BD-quality is the mean reduction of the measure, positive because the test is better.
    rate = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    gmsd = 0.2 - 0.05 * np.log2(rate / 0.1)  # 0.2, 0.15, 0.1, 0.05, 0.0 -> linear in log-rate
    assert bd_rate(rate, gmsd, rate / 2, gmsd, method=method) == pytest.approx(-50.0, abs=1e-9)
    # at equal rate the test's GMSD is lower by 0.05 (one halving of the rate)
    reduction = bd_quality(rate, gmsd, rate / 2, gmsd, method=method, higher_is_better=False)
    assert reduction == pytest.approx(0.05, abs=1e-9)
    assert bd_quality(rate, gmsd, rate / 2, gmsd, method=method) == pytest.approx(-0.05, abs=1e-9)
