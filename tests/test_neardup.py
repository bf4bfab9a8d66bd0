"""Near-duplicate search: multi-index hashing must equal brute force; union-find; representative rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gencomp.data import neardup


def _planted(rng, n, max_flips):
    base = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    near = base.copy()
    for k in range(n):
        for bit in rng.choice(64, int(rng.integers(0, max_flips + 1)), replace=False):
            near[k] ^= np.uint64(1) << np.uint64(int(bit))
    return np.concatenate([base, near, base[: n // 10]])  # and some exact repeats


@pytest.mark.parametrize("threshold", [0, 1, 3, 6, 10])
def test_every_block_count_equals_brute_force(threshold):
    h = _planted(np.random.default_rng(threshold), 600, threshold + 2)
    expected = neardup.hamming_pairs(h, threshold, blocks=0)
    assert len(expected[0]) > 0
    for m in range(1, threshold + 2):
        if max(neardup._probes(b.width, b.radius) for b in neardup.plan_blocks(threshold, m)) > 20_000:
            continue
        got = neardup.hamming_pairs(h, threshold, blocks=m, workers=1 + m % 2)  # threads for odd m
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(e, g)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=60), st.integers(0, 12), st.integers(1, 6))
def test_property_matches_brute_force(values, threshold, blocks):
    # Cluster values so that near pairs exist: derive half of them from the others by small XORs.
    h = np.array(values + [v ^ (1 << (v % 64)) ^ (1 << ((v >> 7) % 64)) for v in values], dtype=np.uint64)
    brute = {(int(i), int(j)) for i in range(len(h)) for j in range(i + 1, len(h))
             if int(h[i] ^ h[j]).bit_count() <= threshold}
    blocks = min(blocks, threshold + 1)
    worst = max(neardup._probes(b.width, b.radius) for b in neardup.plan_blocks(threshold, blocks))
    if worst > neardup.MAX_PROBES:  # refused up front instead of enumerating millions of flips
        with pytest.raises(ValueError, match="bit-flip probes"):
            neardup.hamming_pairs(h, threshold, blocks=blocks)
        blocks = None
    elif worst > 20_000:  # allowed but slow for a unit test
        blocks = None
    i, j, d = neardup.hamming_pairs(h, threshold, blocks=blocks)
    assert set(zip(i.tolist(), j.tolist())) == brute
    assert all(int(h[a] ^ h[b]).bit_count() == dist for a, b, dist in zip(i, j, d))


def test_int64_input_is_the_same_bits():
    h = _planted(np.random.default_rng(1), 200, 4)
    a = neardup.hamming_pairs(h, 4)
    b = neardup.hamming_pairs(h.view(np.int64), 4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_block_plan_satisfies_the_pigeonhole_bound():
    for t in range(0, 20):
        for m in range(1, t + 2):
            plan = neardup.plan_blocks(t, m)
            assert sum(b.width for b in plan) == 64
            assert sum(b.radius for b in plan) >= t - m + 1
    assert neardup.choose_blocks(100, 10) == 0  # tiny input: all pairs
    assert neardup.choose_blocks(1_000_000, 8) > 0


def test_edges_collapse_repeats_and_cluster():
    h = np.array([5, 5, 5, 5, 2**40 | 2**50, 7, 2**40 | 2**50 | 1, 2**63], dtype=np.uint64)
    i, j, d = neardup.near_duplicate_edges(h, 2)
    assert (i < j).all()
    labels = neardup.connected_components(len(h), i, j)
    assert labels.tolist() == [0, 0, 0, 0, 4, 0, 4, 7]  # 5 and 7 differ in 1 bit
    assert len(i) == 3 + 1 + 1  # three repeat edges, 5-7 and the two 2**40|2**50 values


def test_connected_components_chain_and_order_independence():
    n = 1000
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    i, j = perm[:-1], perm[1:]  # one long chain in random order
    assert (neardup.connected_components(n, i, j) == 0).all()
    labels = neardup.connected_components(6, [4, 1], [5, 2])
    assert labels.tolist() == [0, 1, 1, 3, 4, 4]


def test_representative_rule():
    labels = np.array([0, 0, 0, 0, 1, 1])
    pixels = np.array([100, 400, 400, 400, 9, 9])
    nbytes = np.array([1, 50, 70, 70, 3, 3])
    sha = np.array(["a", "d", "c", "b", "z", "y"])
    rep = neardup.choose_representatives(labels, pixels, nbytes, sha)
    assert rep.tolist() == [3, 3, 3, 3, 5, 5]
    rep = neardup.choose_representatives([0, 0], [1, 1], [1, 1], ["s", "s"], tiebreak=["b.jpg", "a.jpg"])
    assert rep.tolist() == [1, 1]
