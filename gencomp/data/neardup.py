"""All pairs of 64-bit hashes within a Hamming distance, by multi-index hashing in numpy; clusters.

Index (multi-index hashing, Norouzi et al. 2012, with the generalised pigeonhole principle): split the 64
bits into ``m`` contiguous blocks with radii ``r_k`` where ``sum(r_k) >= t - m + 1``. If two hashes differ
in at most ``t`` bits, some block ``k`` differs in at most ``r_k`` bits (otherwise the total would be at
least ``sum(r_k + 1) > t``). ``m = t + 1`` gives the textbook case, all radii 0: some block matches
exactly. For each block the hashes are sorted by block value; candidates are pairs of buckets whose values
differ in at most ``r_k`` bits (a bucket with itself, and with every occupied value one to ``r_k`` bit flips
away), and each candidate is verified with a popcount of the full 64-bit XOR. A pair is reported by the
first block that can find it only, so no pair is found twice.

``m`` is chosen by a cost model: many small blocks give few probes but large buckets (many false
candidates); few wide blocks give small buckets but many bit-flip probes. For uniform hashes at n = 1e6
and t = 8 the model picks m = 3 (21-bit blocks, radius 2). Below a few thousand hashes a vectorised
all-pairs scan is cheaper and is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

_U64 = np.uint64
_PAIR_CHUNK = 4_000_000  # candidate pairs verified per numpy batch (bounded memory: ~100 MB)
_PROBE_CHUNK = 4_000_000  # (bucket, flip) probes per batch
MAX_PROBES = 200_000  # bit-flip probes per bucket beyond which a block plan is refused


@dataclass(frozen=True)
class Block:
    shift: int  # lowest bit of the block
    width: int
    radius: int

    @property
    def mask(self) -> np.uint64:
        return _U64(((1 << self.width) - 1) << self.shift)


def plan_blocks(threshold: int, blocks: int) -> list[Block]:
    """Split 64 bits into ``blocks`` contiguous blocks and give them radii summing to ``threshold-blocks+1``."""
    if not 1 <= blocks <= 64:
        raise ValueError(f"blocks must be in 1..64, got {blocks}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    base, extra = divmod(64, blocks)
    widths = [base + 1 if k < extra else base for k in range(blocks)]
    budget = max(0, threshold - blocks + 1)
    r_base, r_extra = divmod(budget, blocks)
    radii = [r_base + 1 if k < r_extra else r_base for k in range(blocks)]
    out, shift = [], 0
    for width, radius in zip(widths, radii):
        out.append(Block(shift, width, min(radius, width)))
        shift += width
    return out


def _probes(width: int, radius: int) -> int:
    return sum(comb(width, k) for k in range(radius + 1))


def estimate_cost(n: int, threshold: int, blocks: int) -> float:
    """Rough cost of :func:`hamming_pairs` with ``blocks`` blocks on ``n`` uniform hashes, in units of about
    15 ns on one core (measured: a probe costs about two units, a verified candidate pair one)."""
    cost = 0.0
    for b in plan_blocks(threshold, blocks):
        probes = _probes(b.width, b.radius)
        occupied = min(n, 2.0**b.width)
        cost += 1e5  # per-block fixed work: argsort, unique, Python overhead
        cost += 2.0 * occupied * probes  # probe generation + binary search
        cost += n * (n - 1) / 2 * probes / 2.0**b.width  # candidate pairs to verify
    return cost


def choose_blocks(n: int, threshold: int) -> int:
    """The block count with the lowest :func:`estimate_cost` (0 means: scan all pairs)."""
    best, best_cost = 0, 0.5 * n * (n - 1) / 2  # all pairs: a plain XOR + popcount per pair
    for m in range(1, min(64, threshold + 1) + 1):
        if max(_probes(b.width, b.radius) for b in plan_blocks(threshold, m)) > MAX_PROBES:
            continue  # flip enumeration alone would be prohibitive
        cost = estimate_cost(n, threshold, m)
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def popcount64(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.asarray(x, dtype=_U64))


def _flip_masks(width: int, radius: int) -> np.ndarray:
    """All non-zero ``width``-bit values with at most ``radius`` bits set."""
    masks = [sum(1 << i for i in bits) for r in range(1, radius + 1) for bits in combinations(range(width), r)]
    return np.array(masks, dtype=_U64)


def _all_pairs(h: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(h)
    out_i, out_j, out_d = [], [], []
    rows = max(1, _PAIR_CHUNK // max(n, 1))
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        d = popcount64(h[lo:hi, None] ^ h[None, :])
        ii, jj = np.nonzero(d <= threshold)
        ii += lo
        keep = jj > ii
        out_i.append(ii[keep])
        out_j.append(jj[keep])
        out_d.append(d[ii[keep] - lo, jj[keep]])
    return _concat(out_i, out_j, out_d)


def _concat(out_i, out_j, out_d):
    if not out_i:
        e = np.empty(0, dtype=np.int64)
        return e, e.copy(), np.empty(0, dtype=np.uint8)
    return (
        np.concatenate(out_i).astype(np.int64),
        np.concatenate(out_j).astype(np.int64),
        np.concatenate(out_d).astype(np.uint8),
    )


def _split_big(sa, ca, sb, cb, same):
    """Split bucket pairs so that no single one expands to more than _PAIR_CHUNK candidates.

    Returns the arrays plus ``aoff``: where each piece of bucket A starts within its bucket (needed to
    keep only ``x < y`` when a bucket is paired with itself).
    """
    aoff = np.zeros_like(sa)
    big = ca * cb > _PAIR_CHUNK
    if not big.any():
        return sa, ca, sb, cb, same, aoff
    pieces = [(sa[~big], ca[~big], sb[~big], cb[~big], same[~big], aoff[~big])]
    for s_a, c_a, s_b, c_b, sm in zip(sa[big], ca[big], sb[big], cb[big], same[big]):
        step = max(1, _PAIR_CHUNK // int(c_b))
        offs = np.arange(0, c_a, step, dtype=np.int64)
        sizes = np.minimum(step, c_a - offs)
        k = len(offs)
        pieces.append((s_a + offs, sizes, np.full(k, s_b), np.full(k, c_b), np.full(k, sm), offs))
    return tuple(np.concatenate([p[c] for p in pieces]) for c in range(6))


def _expand(sa, ca, sb, cb, same, order):
    """Yield ``(a, b, drop)``: every member pair of each bucket pair, in batches of about _PAIR_CHUNK.

    ``drop`` marks the pairs to ignore when a bucket is paired with itself (``x >= y``: self pairs and the
    mirror image of each pair).
    """
    sa, ca, sb, cb, same, aoff = _split_big(sa, ca, sb, cb, same)
    totals = ca * cb
    if len(totals) == 0:
        return
    cum = np.cumsum(totals)
    start = 0
    while start < len(totals):
        base = int(cum[start - 1]) if start else 0
        stop = max(int(np.searchsorted(cum, base + _PAIR_CHUNK, side="right")), start + 1)
        t = totals[start:stop]
        rep = np.repeat(np.arange(start, stop), t)
        local = np.arange(int(t.sum()), dtype=np.int64) - np.repeat(cum[start:stop] - t - base, t)
        x = local // cb[rep]
        y = local - x * cb[rep]
        drop = same[rep] & (aoff[rep] + x >= y)
        yield order[sa[rep] + x], order[sb[rep] + y], drop
        start = stop


def hamming_pairs(
    hashes, threshold: int, *, blocks: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` with ``popcount(hashes[i] ^ hashes[j]) <= threshold``.

    ``hashes``: 64-bit values (``uint64``, or ``int64`` reinterpreted). ``blocks``: number of index blocks
    (None: chosen by :func:`choose_blocks`; 0: all-pairs scan). Returns ``(i, j, distance)`` as int64,
    int64, uint8 arrays sorted by ``(i, j)``. Equal values are pairs at distance 0, so a value repeated
    ``g`` times yields ``g*(g-1)/2`` pairs: use :func:`near_duplicate_edges` for data with many repeats.
    """
    h = np.asarray(hashes)
    h = np.ascontiguousarray(h.view(_U64) if h.dtype == np.int64 else h.astype(_U64, copy=False))
    if h.ndim != 1:
        raise ValueError("hashes must be a 1-D array")
    n = len(h)
    if blocks is None:
        blocks = choose_blocks(n, threshold)
    plan = plan_blocks(threshold, blocks) if blocks else []
    worst = max((_probes(b.width, b.radius) for b in plan), default=0)
    if worst > MAX_PROBES:
        raise ValueError(f"{blocks} blocks at threshold {threshold} need {worst} bit-flip probes per bucket; "
                         f"use more blocks (or blocks=None to choose)")
    if blocks == 0 or n < 2:
        i, j, d = _all_pairs(h, threshold)
        return _sorted(i, j, d)

    out_i, out_j, out_d = [], [], []
    for k, block in enumerate(plan):
        keys = (h >> _U64(block.shift)) & _U64((1 << block.width) - 1)
        order = np.argsort(keys, kind="stable")
        ukeys, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
        starts = starts.astype(np.int64)
        counts = counts.astype(np.int64)

        def verify(a, b, drop):
            x = h[a] ^ h[b]
            d = popcount64(x)
            ok = (d <= threshold) & ~drop
            for earlier in plan[:k]:  # found by an earlier block already
                ok &= popcount64(x & earlier.mask) > earlier.radius
            lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
            out_i.append(lo)
            out_j.append(hi)
            out_d.append(d[ok])

        # A bucket with itself (block values equal).
        multi = counts >= 2
        sm, cm = starts[multi], counts[multi]
        for a, b, drop in _expand(sm, cm, sm, cm, np.ones(len(sm), dtype=bool), order):
            verify(a, b, drop)

        # A bucket with each occupied bucket whose value is 1..radius bit flips away (each unordered pair
        # of buckets once: only probes to a larger value).
        flips = _flip_masks(block.width, block.radius)
        if len(flips) == 0 or len(ukeys) < 2:
            continue
        per_batch = max(1, _PROBE_CHUNK // len(ukeys))
        for f0 in range(0, len(flips), per_batch):
            f = flips[f0 : f0 + per_batch]
            probe = ukeys[:, None] ^ f[None, :]
            src, _ = np.nonzero(probe > ukeys[:, None])
            probe = probe[probe > ukeys[:, None]]
            pos = np.searchsorted(ukeys, probe)
            pos_c = np.minimum(pos, len(ukeys) - 1)
            hit = ukeys[pos_c] == probe
            src, dst = src[hit], pos_c[hit]
            cross = np.zeros(len(src), dtype=bool)
            for a, b, drop in _expand(starts[src], counts[src], starts[dst], counts[dst], cross, order):
                verify(a, b, drop)
    i, j, d = _concat(out_i, out_j, out_d)
    return _sorted(i, j, d)


def _sorted(i, j, d):
    o = np.lexsort((j, i))
    return i[o], j[o], d[o]


def near_duplicate_edges(
    hashes, threshold: int, *, blocks: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges whose connected components are the clusters of the within-``threshold`` graph.

    Every pair of *distinct* values within the threshold is an edge between their first occurrences;
    each repeat of a value gets one edge (distance 0) to its first occurrence, instead of the quadratic
    number of pairs among repeats. Returns ``(i, j, distance)`` with ``i < j``.
    """
    h = np.asarray(hashes)
    h = h.view(_U64) if h.dtype == np.int64 else h.astype(_U64)
    uniq, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    ui, uj, d = hamming_pairs(uniq, threshold, blocks=blocks)
    a, b = first[ui], first[uj]
    repeat = np.nonzero(first[inverse] != np.arange(len(h)))[0]
    i = np.concatenate([np.minimum(a, b), first[inverse[repeat]]]).astype(np.int64)
    j = np.concatenate([np.maximum(a, b), repeat]).astype(np.int64)
    dist = np.concatenate([d, np.zeros(len(repeat), dtype=np.uint8)])
    return _sorted(i, j, dist)


def connected_components(n: int, i, j) -> np.ndarray:
    """Union-find over ``n`` nodes and edges ``(i, j)``: label of each node = smallest node in its component.

    Vectorised: every round hooks the larger root of each edge under the smaller one, then compresses
    paths by pointer jumping; roots only ever point to smaller indices, so there are no cycles.
    """
    parent = np.arange(n, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    while len(i):
        ri, rj = parent[i], parent[j]
        lo, hi = np.minimum(ri, rj), np.maximum(ri, rj)
        pending = lo != hi
        if not pending.any():
            break
        i, j, lo, hi = i[pending], j[pending], lo[pending], hi[pending]
        np.minimum.at(parent, hi, lo)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent


def cluster_hashes(hashes, threshold: int, *, blocks: int | None = None) -> np.ndarray:
    """Cluster label (smallest member index) of each hash, linking hashes within ``threshold`` bits."""
    i, j, _ = near_duplicate_edges(hashes, threshold, blocks=blocks)
    return connected_components(len(np.asarray(hashes)), i, j)


def choose_representatives(labels, pixels, nbytes, sha256, tiebreak=None) -> np.ndarray:
    """Index of each cluster's representative, per row: most pixels, then largest file, then smallest sha256
    (then smallest ``tiebreak``, e.g. the path, so that copies of one file are ordered deterministically)."""
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    sha = np.asarray(sha256, dtype=object)
    tb = np.asarray(tiebreak if tiebreak is not None else [""] * n, dtype=object)
    # lexsort: last key is primary. Rank strings so that lexsort can use them ascending.
    sha_rank = np.unique(sha.astype(str), return_inverse=True)[1]
    tb_rank = np.unique(tb.astype(str), return_inverse=True)[1]
    order = np.lexsort((tb_rank, sha_rank, -np.asarray(nbytes, dtype=np.int64),
                        -np.asarray(pixels, dtype=np.int64), labels))
    first_of_label = np.ones(n, dtype=bool)
    first_of_label[1:] = labels[order][1:] != labels[order][:-1]
    best_for = dict(zip(labels[order][first_of_label].tolist(), order[first_of_label].tolist()))
    return np.array([best_for[x] for x in labels.tolist()], dtype=np.int64)
