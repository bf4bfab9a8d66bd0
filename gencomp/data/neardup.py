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
and t = 10 the model picks m = 3 (21/22-bit blocks, radii 3, 3, 2; ~28 s of one core), for t = 8 also m = 3
(~7 s). Below a few thousand hashes a vectorised all-pairs scan is cheaper and is used instead. Blocks can
run in threads (``workers``): numpy releases the GIL.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

_U64 = np.uint64
_PAIR_CHUNK = 4_000_000  # candidate pairs verified per numpy batch (bounded memory: ~100 MB)
_PROBE_CHUNK = 4_000_000  # (bucket, flip) probes per batch
MAX_PROBES = 200_000
_DENSE_TABLE_BITS = 24  # blocks up to this width use a 2**width int32 lookup table (64 MiB at 24 bits)  # bit-flip probes per bucket beyond which a block plan is refused


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
    10 ns of one core. Calibrated at n = 1e6: t = 10 took 28 s of CPU with 3 blocks, 39 s with 4; t = 8 took
    6.6 s with 3 blocks, 15.5 s with 4. A probe (half the flips per occupied bucket) and a verified
    candidate pair cost about one unit each."""
    cost = 0.0
    for b in plan_blocks(threshold, blocks):
        probes = _probes(b.width, b.radius)
        buckets = 2.0**b.width
        occupied = buckets * -np.expm1(-n / buckets)
        cost += 1e5  # per-block fixed work: argsort, unique, Python overhead
        cost += 0.5 * occupied * (probes - 1)  # probes to larger bucket values only
        cost += n * (n - 1) / 2 * probes / buckets  # candidate pairs to verify
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


def _expand(sa, ca, sb, cb, same):
    """Yield ``(pa, pb, drop)``: positions (in key-sorted order) of every member pair of each bucket pair, in
    batches of about _PAIR_CHUNK. ``drop`` (None when no bucket is paired with itself) marks the pairs to
    ignore in a bucket paired with itself: ``x >= y``, self pairs and the mirror image of each pair.
    """
    single = (ca == 1) & (cb == 1) & ~same  # most bucket pairs when blocks are wide: no expansion needed
    for lo in range(0, int(single.sum()), _PAIR_CHUNK):
        yield sa[single][lo : lo + _PAIR_CHUNK], sb[single][lo : lo + _PAIR_CHUNK], None
    sa, ca, sb, cb, same = sa[~single], ca[~single], sb[~single], cb[~single], same[~single]
    sa, ca, sb, cb, same, aoff = _split_big(sa, ca, sb, cb, same)
    totals = ca * cb
    if len(totals) == 0:
        return
    any_same = bool(same.any())
    cum = np.cumsum(totals)
    start = 0
    while start < len(totals):
        base = int(cum[start - 1]) if start else 0
        stop = max(int(np.searchsorted(cum, base + _PAIR_CHUNK, side="right")), start + 1)
        t = totals[start:stop]
        rep = np.repeat(np.arange(start, stop), t)
        local = np.arange(int(t.sum()), dtype=np.int64) - np.repeat(cum[start:stop] - t - base, t)
        width = cb[rep]
        x = local // width
        y = local - x * width
        drop = (same[rep] & (aoff[rep] + x >= y)) if any_same else None
        yield sa[rep] + x, sb[rep] + y, drop
        start = stop


def _block_pairs(h: np.ndarray, plan: list[Block], k: int, threshold: int):
    """The pairs within ``threshold`` that block ``k`` finds and no earlier block does."""
    block = plan[k]
    keys = (h >> _U64(block.shift)) & _U64((1 << block.width) - 1)
    order = np.argsort(keys, kind="stable")
    hs = h[order]  # candidates are verified in key-sorted order: bucket members are contiguous
    ukeys, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
    starts = starts.astype(np.int64)
    counts = counts.astype(np.int64)
    out_i, out_j, out_d = [], [], []

    def verify(pa, pb, drop):
        x = hs[pa] ^ hs[pb]
        d = popcount64(x)
        ok = d <= threshold
        if drop is not None:
            ok &= ~drop
        for earlier in plan[:k]:  # found by an earlier block already
            ok &= popcount64(x & earlier.mask) > earlier.radius
        a, b = order[pa[ok]], order[pb[ok]]
        out_i.append(np.minimum(a, b))
        out_j.append(np.maximum(a, b))
        out_d.append(d[ok])

    # A bucket with itself (block values equal).
    multi = counts >= 2
    sm, cm = starts[multi], counts[multi]
    for batch in _expand(sm, cm, sm, cm, np.ones(len(sm), dtype=bool)):
        verify(*batch)

    # A bucket with each occupied bucket whose value is 1..radius bit flips away (each unordered pair of
    # buckets once: only probes to a larger value).
    flips = _flip_masks(block.width, block.radius)
    if len(flips) and len(ukeys) >= 2:
        # Bucket lookup: a dense key -> bucket table when the block is narrow enough (one gather per probe),
        # else a binary search. Buckets are in ascending key order, so "probe value > own value" is
        # "probe bucket > own bucket", and a miss (-1) is never greater.
        table = None
        if block.width <= _DENSE_TABLE_BITS:
            table = np.full(1 << block.width, -1, dtype=np.int32)
            table[ukeys.astype(np.int64)] = np.arange(len(ukeys), dtype=np.int32)
            ukeys, flips = ukeys.astype(np.int64), flips.astype(np.int64)
        # key ^ f > key exactly when key has a 0 at f's highest set bit: probe only those keys, so each
        # unordered pair of buckets is met once and no probe is wasted.
        top = np.floor(np.log2(flips.astype(np.float64))).astype(np.int64)
        for bit in range(block.width):
            f_bit = flips[top == bit]
            if len(f_bit) == 0:
                continue
            src_all = np.nonzero(((ukeys >> type(ukeys[0])(bit)) & type(ukeys[0])(1)) == 0)[0]
            if len(src_all) == 0:
                continue
            rows = max(1, _PROBE_CHUNK // len(f_bit))
            for r0 in range(0, len(src_all), rows):
                src_rows = src_all[r0 : r0 + rows]
                probe = ukeys[src_rows][:, None] ^ f_bit[None, :]
                if table is not None:
                    dst = table[probe]
                else:
                    pos = np.minimum(np.searchsorted(ukeys, probe), len(ukeys) - 1)
                    dst = np.where(ukeys[pos] == probe, pos, -1)
                row, col = np.nonzero(dst >= 0)
                src = src_rows[row]
                dst = dst[row, col].astype(np.int64)
                for batch in _expand(starts[src], counts[src], starts[dst], counts[dst],
                                     np.zeros(len(src), dtype=bool)):
                    verify(*batch)
    return _concat(out_i, out_j, out_d)


def hamming_pairs(
    hashes, threshold: int, *, blocks: int | None = None, workers: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` with ``popcount(hashes[i] ^ hashes[j]) <= threshold``.

    ``hashes``: 64-bit values (``uint64``, or ``int64`` reinterpreted). ``blocks``: number of index blocks
    (None: chosen by :func:`choose_blocks`; 0: all-pairs scan). ``workers``: threads, one block each at a
    time (numpy releases the GIL). Returns ``(i, j, distance)`` as int64, int64, uint8 arrays sorted by
    ``(i, j)``. Equal values are pairs at distance 0, so a value repeated ``g`` times yields ``g*(g-1)/2``
    pairs: use :func:`near_duplicate_edges` for data with many repeats.
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
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(lambda k: _block_pairs(h, plan, k, threshold), range(len(plan))))
    else:
        parts = [_block_pairs(h, plan, k, threshold) for k in range(len(plan))]
    i, j, d = _concat([p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts])
    return _sorted(i, j, d)


def _sorted(i, j, d):
    o = np.lexsort((j, i))
    return i[o], j[o], d[o]


def near_duplicate_edges(
    hashes, threshold: int, *, blocks: int | None = None, workers: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges whose connected components are the clusters of the within-``threshold`` graph.

    Every pair of *distinct* values within the threshold is an edge between their first occurrences;
    each repeat of a value gets one edge (distance 0) to its first occurrence, instead of the quadratic
    number of pairs among repeats. Returns ``(i, j, distance)`` with ``i < j``.
    """
    h = np.asarray(hashes)
    h = h.view(_U64) if h.dtype == np.int64 else h.astype(_U64)
    uniq, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    ui, uj, d = hamming_pairs(uniq, threshold, blocks=blocks, workers=workers)
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


def cluster_hashes(hashes, threshold: int, *, blocks: int | None = None, workers: int = 1) -> np.ndarray:
    """Cluster label (smallest member index) of each hash, linking hashes within ``threshold`` bits."""
    i, j, _ = near_duplicate_edges(hashes, threshold, blocks=blocks, workers=workers)
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


def cross_owner_edges(hashes, owner, threshold: int, *, workers: int = 1):
    """Candidate pairs of *images* from several hash entries per image.

    ``hashes`` (E,): 64-bit values, ``owner`` (E,): the image each entry belongs to. Entries are joined by
    :func:`near_duplicate_edges` (so a value repeated g times costs g edges, not g^2); edges inside one image
    are dropped and each image pair is kept once, at its smallest distance. Returns ``(a, b, distance, ea,
    eb)`` with ``a < b`` image indices and ``ea``/``eb`` the entries that matched (for the "why" columns).
    """
    owner = np.asarray(owner, dtype=np.int64)
    i, j, d = near_duplicate_edges(hashes, threshold, workers=workers)
    oi, oj = owner[i], owner[j]
    cross = oi != oj
    i, j, d, oi, oj = i[cross], j[cross], d[cross], oi[cross], oj[cross]
    swap = oi > oj
    a, b = np.where(swap, oj, oi), np.where(swap, oi, oj)
    ea, eb = np.where(swap, j, i), np.where(swap, i, j)
    order = np.lexsort((eb, ea, d, b, a))
    a, b, d, ea, eb = a[order], b[order], d[order], ea[order], eb[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first], d[first].astype(np.int64), ea[first], eb[first]


def _find_all(parent: np.ndarray) -> np.ndarray:
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def cluster_verified(n: int, a, b, distance, verify, *, batch: int = 2048):
    """Union-find in which every joining edge must pass ``verify``.

    Candidate edges are taken in order of increasing hash distance, ``batch`` at a time; an edge whose two
    images are already in one cluster is skipped (not verified), the others go to ``verify(edge_indices) ->
    (accepted bool array, score array)`` at once, and the accepted ones are joined. Each cluster is thus a
    tree of verified edges, and the verifier runs about once per joined image plus once per rejected pair.

    Returns ``(labels, tree, verified, scores)``: labels (n,) = smallest member index of each cluster;
    ``tree`` (n,) = the first accepted edge at each node, which says why it is in its cluster (-1: none); ``verified``
    bool (E,) whether an edge was scored, ``scores`` (E,) float (nan where not scored).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    m = len(a)
    order = np.lexsort((b, a, np.asarray(distance)))
    parent = np.arange(n, dtype=np.int64)
    tree = np.full(n, -1, dtype=np.int64)
    verified = np.zeros(m, dtype=bool)
    scores = np.full(m, np.nan, dtype=np.float64)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for lo in range(0, m, batch):
        idx = order[lo:lo + batch]
        roots = _find_all(parent.copy())
        idx = idx[roots[a[idx]] != roots[b[idx]]]
        if len(idx) == 0:
            continue
        ok, sc = verify(idx)
        verified[idx] = True
        scores[idx] = sc
        for e in idx[np.asarray(ok, dtype=bool)].tolist():
            ra, rb = find(int(a[e])), find(int(b[e]))
            if ra == rb:
                continue
            parent[max(ra, rb)] = min(ra, rb)
            for x in (int(a[e]), int(b[e])):
                if tree[x] == -1:
                    tree[x] = e
    labels = _find_all(parent)
    return labels, tree, verified, scores
