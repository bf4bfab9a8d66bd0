"""Soak test of concurrent and killed shard writers: does any image get lost or stored twice?

    python benchmarks/soak_shards.py [--images 60] [--runs 20] [--kills 20] [--seed 0]

Builds ``--images`` small PNGs and a clusters.parquet that keeps all of them, in a temporary folder. Then:

1. ``--runs`` times: two ``write_shards`` processes start together on one fresh output folder (2 rows per
   shard, so there are many shard and manifest writes to interleave);
2. ``--kills`` times: two writers start together on a fresh folder, one of them is SIGKILLed at a random
   moment in the first 1.5 single-write durations (so mostly while it writes or waits for the lock; the
   summary counts the kills that landed before the victim finished), the other finishes, and then one more
   writer runs (the rerun after a crash).

After each, it reads every shard and counts images lost (kept but in no shard), duplicated (in two rows or
more), writers that exited non-zero (other than the killed one), and whether ``verify_shards`` passes. Prints
one JSON line per round and a summary; exits 1 if any image was lost or duplicated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gencomp.data import shards  # noqa: E402

WRITER = """
import sys, time
from gencomp.data.shards import write_shards
print("ready", flush=True)
while not __import__("os").path.exists(sys.argv[4]):
    time.sleep(0.005)
write_shards(sys.argv[1], sys.argv[2], sys.argv[3], target_rows=2, row_group_rows=1)
"""


def make_corpus(folder: Path, n: int) -> tuple[Path, Path]:
    images = folder / "images"
    images.mkdir(parents=True)
    rows = []
    for k in range(n):
        rng = np.random.default_rng(k)
        small = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
        path = images / f"img{k:03d}.png"
        Image.fromarray(small).resize((64, 48), Image.Resampling.NEAREST).save(path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append({"path": path.name, "sha256": sha, "keep": True, "cluster_key": sha, "width": 64, "height": 48})
    clusters = folder / "clusters.parquet"
    pd.DataFrame(rows).to_parquet(clusters)
    return images, clusters


def start_writers(count: int, images: Path, clusters: Path, out: Path, go: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(clusters), str(images), str(out), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(count)]
    for proc in procs:  # imports done: start them together
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    return procs


def check(out: Path, expected: set[str]) -> dict:
    manifest = shards.read_manifest(out)
    counts = Counter()
    for shard in manifest["shards"]:
        counts.update(pq.read_table(out / shard["file"], columns=["sha256"]).column("sha256").to_pylist())
    try:
        shards.verify_shards(out)
        verified = True
    except shards.ShardError:
        verified = False
    return {"lost": len(expected - set(counts)), "duplicated": sum(1 for c in counts.values() if c > 1),
            "rows": sum(counts.values()), "verified": verified}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images, clusters = make_corpus(tmp, args.images)
        expected = set(pd.read_parquet(clusters)["sha256"])
        rounds = []
        # one undisturbed write (from the start signal, imports done) sets the window in which kills land
        procs = start_writers(1, images, clusters, tmp / "timing", tmp / "go-timing")
        t0 = time.perf_counter()
        for proc in procs:
            proc.wait()
        write_s = time.perf_counter() - t0
        for k in range(args.runs):
            out = tmp / f"run{k}"
            procs = start_writers(2, images, clusters, out, tmp / f"go-run{k}")
            codes = [proc.wait() for proc in procs]
            rounds.append({"kind": "concurrent", "round": k, "failed_writers": sum(c != 0 for c in codes),
                           **check(out, expected)})
            print(json.dumps(rounds[-1]), flush=True)
        for k in range(args.kills):
            out = tmp / f"kill{k}"
            procs = start_writers(2, images, clusters, out, tmp / f"go-kill{k}")
            time.sleep(rng.uniform(0.0, 1.5 * write_s))  # the second writer waits for the first: 2x in all
            victim = procs[rng.randrange(2)]
            mid_write = victim.poll() is None
            victim.send_signal(signal.SIGKILL)
            codes = [proc.wait() for proc in procs if proc is not victim]
            rerun = start_writers(1, images, clusters, out, tmp / f"go-rerun{k}")
            codes += [proc.wait() for proc in rerun]
            rounds.append({"kind": "sigkill", "round": k, "killed_mid_write": mid_write,
                           "failed_writers": sum(c != 0 for c in codes), **check(out, expected)})
            print(json.dumps(rounds[-1]), flush=True)
    summary = {
        "images": args.images,
        "write_s": round(write_s, 2),
        "concurrent_runs": args.runs,
        "sigkills": args.kills,
        "sigkills_mid_write": sum(r.get("killed_mid_write", False) for r in rounds),
        "lost": sum(r["lost"] for r in rounds),
        "duplicated": sum(r["duplicated"] for r in rounds),
        "failed_writers": sum(r["failed_writers"] for r in rounds),
        "unverified": sum(not r["verified"] for r in rounds),
    }
    print(json.dumps({"summary": summary}))
    return 1 if summary["lost"] or summary["duplicated"] else 0


if __name__ == "__main__":
    sys.exit(main())
