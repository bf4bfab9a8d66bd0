"""Dedupe speed: hashing throughput (with decode) and the near-duplicate join.

    python benchmarks/bench_dedupe.py [--photos DIR] [--workers 2] [--n-hashes 1000000] [--threshold 8]
                                      [--rounds 2] [--skip-hashing] [--skip-join]

1. Hashing: JPEGs at 640x480 and 1920x1080 (made from ``--photos`` when given, else from scikit-image's
   sample photos) hashed by gencomp.data.hashing.hash_files (every value the default dedupe needs: pHash,
   dHash, the canonical full/c92/c60 candidate hashes, the 64x64 thumbnail, sha256, probe; DCT-scaled
   decode; process pool) against, in the same run: the first hasher of those values (every resize read
   the whole decode; kept below as the baseline), the hasher before them (pHash + dHash only), both with
   the same decode and pool, and the naive ``imagehash.phash(Image.open(p))`` in one process. The pool
   methods take turns for ``--rounds`` rounds and the best round of each is printed, after one untimed
   pool has started the forkserver (whichever method ran first used to pay for starting it), so every
   pool forks its workers from the same forkserver. The CPU column is the hashing alone, in this process,
   best of 3 passes over 100 files: it is what the CPU share left by other work changes least.
2. Join, each in a subprocess so that its peak memory (ru_maxrss) is its own: ``n`` images with uniform
   random 64-bit hashes and planted near pairs at distances 0..threshold. "before": one pHash per image,
   gencomp.data.neardup.hamming_pairs. "verified default": three candidate hashes per image plus the 3 %
   ambiguous second orientations, gencomp.data.neardup.cross_owner_edges (the search the default runs);
   planted pairs are put in one kind (c60) to check its recall. Wall and CPU seconds are printed: the
   CPU is shared with other work here, so CPU seconds compare better across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gencomp.data import neardup  # noqa: E402
from gencomp.data.hashing import hash_files  # noqa: E402


def _sources(limit: int, photos: str | None) -> list[Image.Image]:
    paths = sorted(p for p in Path(photos).rglob("*.jpg"))[:limit] if photos and Path(photos).is_dir() else []
    if paths:
        return [Image.open(p).convert("RGB") for p in paths]
    from skimage import data

    return [Image.fromarray(f()) for f in (data.astronaut, data.chelsea, data.coffee, data.rocket)]


def _make_jpegs(folder: Path, sources, size, count) -> list[Path]:
    out = []
    for k in range(count):
        img = sources[k % len(sources)].resize(size, Image.Resampling.BILINEAR)
        if k >= len(sources):  # different bytes for every file
            img = img.rotate(k % 7 - 3)
        p = folder / f"{size[0]}x{size[1]}_{k:04d}.jpg"
        img.save(p, quality=88)
        out.append(p)
    return out


def _first_issue17_features(grey: Image.Image) -> dict:
    """The first hasher of every value the verified dedupe needs (until 2026-11-30): every resize, the 64x64
    thumbnail and the c92/c60 boxes included, read the whole decoded image. Kept as the baseline."""
    import imagehash
    import scipy.fft

    from gencomp.data.hashing import AMBIGUOUS, CANDIDATE_KINDS, THUMB_SIDE, _bits_to_int64

    sign = np.where(np.arange(8) % 2, -1.0, 1.0)
    w, h = grey.size
    row = {"dhash": _bits_to_int64(imagehash.dhash(grey).hash)}
    lanczos = Image.Resampling.LANCZOS
    for kind, share in CANDIDATE_KINDS.items():
        box = ((1 - share) / 2 * w, (1 - share) / 2 * h, (1 + share) / 2 * w, (1 + share) / 2 * h)
        pixels = np.asarray(grey.resize((32, 32), lanczos, box=box if share < 1 else None), dtype=np.float64)
        low = scipy.fft.dct(scipy.fft.dct(pixels, axis=0), axis=1)[:8, :8]  # one kind at a time, as it was
        c01 = low[0, 1] / (float(np.sqrt((low**2).sum() - low[0, 0] ** 2)) + 1e-9)
        plain = _bits_to_int64(low > np.median(low))
        mirrored = _bits_to_int64(low * sign > np.median(low * sign))
        first = mirrored if c01 > 0 else plain
        alt = (plain if c01 > 0 else mirrored) if abs(c01) < AMBIGUOUS else first
        row[kind], row[f"{kind}_alt"], row[f"{kind}_mirrored"] = first, alt, bool(c01 > 0)
        if share == 1.0:
            row["phash"] = plain
    row["thumb"] = np.asarray(grey.resize((THUMB_SIDE, THUMB_SIDE), lanczos), dtype=np.uint8).tobytes()
    return row


def _first_issue17_hash_bytes(data: bytes) -> dict:
    """:func:`gencomp.data.hashing.hash_image_bytes` with :func:`_first_issue17_features`."""
    from gencomp.data.hashing import HASH_DRAFT_SIZE, sha256_bytes
    from gencomp.data.images import open_image, probe

    info = probe(data)
    grey = open_image(data, draft_size=HASH_DRAFT_SIZE).convert("L")
    return {"sha256": sha256_bytes(data), "width": info.width, "height": info.height, "format": info.format,
            "status": "ok", **_first_issue17_features(grey)}


def _first_issue17_hash_file(path) -> dict:
    return _first_issue17_hash_bytes(Path(path).read_bytes())


def _previous_hash_bytes(data: bytes) -> tuple:
    import imagehash

    from gencomp.data.hashing import HASH_DRAFT_SIZE, sha256_bytes
    from gencomp.data.images import open_image, probe

    probe(data)
    grey = open_image(data, draft_size=HASH_DRAFT_SIZE).convert("L")
    return sha256_bytes(data), str(imagehash.phash(grey)), str(imagehash.dhash(grey))


def _previous_hash_file(path) -> tuple:
    """The hasher before the verified dedupe: probe, draft decode, pHash and dHash only."""
    return _previous_hash_bytes(Path(path).read_bytes())


def _pool_map(fn, paths, workers: int) -> list:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        return list(pool.map(fn, paths, chunksize=16))


def _first_issue17_hash_files(paths, workers: int) -> None:
    import pyarrow as pa

    from gencomp.data.hashing import HASH_SCHEMA

    rows = _pool_map(_first_issue17_hash_file, paths, workers)
    pa.Table.from_pylist(rows, schema=HASH_SCHEMA).to_pandas()  # what hash_files does with its rows


def _cpu_ms(fn, blobs) -> float:
    """CPU milliseconds per image of ``fn`` over ``blobs`` in this process, best of 3 passes."""
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        for data in blobs:
            fn(data)
        best = min(best, time.process_time() - c0)
    return best / len(blobs) * 1e3


def bench_hashing(workers: int, n_small: int, n_big: int, photos: str | None, rounds: int) -> None:
    import imagehash

    from gencomp.data.hashing import hash_image_bytes

    print(f"## Hashing throughput (cpu count {os.cpu_count()}, load average before {os.getloadavg()[0]:.1f})\n")
    print(f"| images | method | images/s, {workers} procs (best of {rounds} rounds) | CPU ms / image (1 proc) |")
    print("|---|---|---|---|")
    sources = _sources(48, photos)
    methods = {  # name -> (pool run over paths, in-process hash of one file's bytes)
        "gencomp hash_files (every value of the default: pHash, dHash, 3 candidate hashes, 64x64 thumbnail, "
        "sha256)": (lambda paths: hash_files(paths, workers=workers), hash_image_bytes),
        "first hasher of the same values (every resize from the whole decode), baseline":
            (lambda paths: _first_issue17_hash_files(paths, workers), _first_issue17_hash_bytes),
        "previous hasher (pHash + dHash + sha256 only, same decode)":
            (lambda paths: _pool_map(_previous_hash_file, paths, workers), _previous_hash_bytes),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size, count in (((640, 480), n_small), ((1920, 1080), n_big)):
            paths = _make_jpegs(Path(tmp), sources, size, count)
            # Untimed: warms caches and starts the forkserver (with gencomp.data.hashing preloaded, as
            # hash_files starts it), which every pool below then forks its workers from.
            assert (hash_files(paths[:32], workers=workers, chunksize=8)["status"] == "ok").all()
            best = {name: float("inf") for name in methods}
            for _ in range(rounds):
                for name, (run, _) in methods.items():
                    t0 = time.perf_counter()
                    run(paths)
                    best[name] = min(best[name], time.perf_counter() - t0)
            blobs = [p.read_bytes() for p in paths[:100]]
            t0 = time.perf_counter()
            for p in paths:
                imagehash.phash(Image.open(p))
            naive = time.perf_counter() - t0
            label = f"{count} x {size[0]}x{size[1]} JPEG"
            for name, (_, one) in methods.items():
                print(f"| {label} | {name} | {count / best[name]:,.0f} | {_cpu_ms(one, blobs):.2f} |")
            print(f"| {label} | naive imagehash.phash(Image.open(p)), 1 proc | {count / naive:,.0f} | |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}\n")


def _planted(n: int, pairs: int, threshold: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    a = rng.choice(n, size=pairs, replace=False)
    b = rng.choice(np.setdiff1d(np.arange(n), a), size=pairs, replace=False)
    dist = rng.integers(0, threshold + 1, size=pairs)
    for src, dst, d in zip(a, b, dist):
        flip = np.uint64(0)
        for bit in rng.choice(64, int(d), replace=False):
            flip |= np.uint64(1) << np.uint64(int(bit))
        h[dst] = h[src] ^ flip
    return h, np.minimum(a, b), np.maximum(a, b)


def bench_join(n: int, threshold: int, workers: int) -> None:
    print(f"## Near-duplicate join, threshold {threshold} (load average {os.getloadavg()[0]:.1f})\n")
    print("| hashes | method | blocks | seconds | pairs found | planted recall |")
    print("|---|---|---|---|---|---|")
    for size in (20_000, n):
        h, pa, pb = _planted(size, max(100, size // 100), threshold)
        blocks = neardup.choose_blocks(size, threshold)
        t0 = time.perf_counter()
        i, j, _ = neardup.hamming_pairs(h, threshold, workers=workers)
        dt = time.perf_counter() - t0
        found = set(zip(i.tolist(), j.tolist()))
        recall = np.mean([(x, y) in found for x, y in zip(pa.tolist(), pb.tolist())])
        print(f"| {size:,} | multi-index hashing, {workers} threads | {blocks} | {dt:.1f} | {len(i):,} | "
              f"{recall:.4f} |")
        if size == 20_000:
            t0 = time.perf_counter()
            bi, bj, _ = neardup.hamming_pairs(h, threshold, blocks=0)
            dt = time.perf_counter() - t0
            same = np.array_equal(bi, i) and np.array_equal(bj, j)
            print(f"| {size:,} | all pairs (vectorised XOR+popcount) | - | {dt:.1f} | {len(bi):,} | "
                  f"same pairs: {same} |")
            est = dt * (n / size) ** 2
            print(f"| {n:,} | all pairs, extrapolated (n^2) | - | ~{est:,.0f} | | |")
    t0 = time.perf_counter()
    neardup.cluster_hashes(h, threshold, workers=workers)
    print(f"\ncluster_hashes (join + union-find) on {n:,}: {time.perf_counter() - t0:.1f} s\n")


def _join_child(mode: str, n: int, threshold: int, workers: int) -> None:
    import resource

    rng = np.random.default_rng(1)
    pairs = max(100, n // 100)
    if mode == "before":
        h, pa, pb = _planted(n, pairs, threshold)
        t0, c0 = time.perf_counter(), time.process_time()
        i, j, _ = neardup.hamming_pairs(h, threshold, workers=workers)
        found = set(zip(i.tolist(), j.tolist()))
    else:
        kinds = 3
        h1, pa, pb = _planted(n, pairs, threshold)  # planted pairs live in the c60 kind
        hashes = [rng.integers(0, 2**64, size=n, dtype=np.uint64) for _ in range(kinds - 1)] + [h1]
        owner = [np.arange(n)] * kinds
        amb = [np.nonzero(rng.random(n) < 0.08)[0] for _ in range(kinds)]  # second orientations
        hashes += [rng.integers(0, 2**64, size=len(a), dtype=np.uint64) for a in amb]
        owner += amb
        h, o = np.concatenate(hashes), np.concatenate(owner)
        t0, c0 = time.perf_counter(), time.process_time()
        a, b, _, _, _ = neardup.cross_owner_edges(h, o, threshold, workers=workers)
        found = set(zip(a.tolist(), b.tolist()))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    recall = np.mean([(x, y) in found for x, y in zip(pa.tolist(), pb.tolist())])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    entries = len(h)
    print(f"| {n:,} | {mode} ({entries:,} hashes) | {dt:.1f} | {cpu:.1f} | {len(found):,} | {recall:.4f} | {peak:,.0f} |",
          flush=True)


def bench_join_modes(n: int, threshold: int, workers: int) -> None:
    import subprocess

    print(f"## Near-duplicate join of the default vs before, threshold {threshold} "
          f"(load average {os.getloadavg()[0]:.1f})\n")
    print("| images | search | wall s | CPU s | pairs found | planted recall | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("before", "verified"):
        subprocess.run([sys.executable, __file__, "--join-child", mode, "--n-hashes", str(n), "--threshold",
                        str(threshold), "--workers", str(workers)], check=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=None, help="folder of JPEG photos to make the test files from")
    ap.add_argument("--join-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-hashes", type=int, default=1_000_000)
    ap.add_argument("--threshold", type=int, default=8)
    ap.add_argument("--n-small", type=int, default=600)
    ap.add_argument("--n-big", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2, help="hashing: rounds of the pool methods, best one printed")
    ap.add_argument("--skip-hashing", action="store_true")
    ap.add_argument("--skip-join", action="store_true")
    args = ap.parse_args()
    if args.join_child:
        _join_child(args.join_child, args.n_hashes, args.threshold, args.workers)
        return
    if not args.skip_hashing:
        bench_hashing(args.workers, args.n_small, args.n_big, args.photos, args.rounds)
    if not args.skip_join:
        bench_join_modes(args.n_hashes, args.threshold, args.workers)


if __name__ == "__main__":
    main()
