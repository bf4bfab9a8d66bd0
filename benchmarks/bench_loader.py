"""Shard loader throughput and its stalls at epoch ends: batches/s with DataLoader passes of 1 or more epochs.

    python benchmarks/bench_loader.py SHARDS_DIR [--workers 8] [--batch 128] [--crop 64] [--crops-per-image 8]
                                      [--batches 200] [--epochs-per-pass 1 8]

For each ``--epochs-per-pass`` value, pulls ``--batches`` batches through the training BatchStream (the
shard loader, as `gencomp train` uses it) and reports batches/s, crops/s, and the share of the wall time spent
waiting for the first batch of a pass (worker start, shuffle-buffer fill, prefetch). The model is left out:
this is the ceiling the loader puts on a training step.
"""

from __future__ import annotations

import argparse
import time
import warnings

from gencomp.data.loader import ShardDataset
from gencomp.train.loop import BatchStream


def measure(shards: str, *, workers: int, batch: int, crop: int, crops: int, batches: int, per_pass: int) -> dict:
    ds = ShardDataset(shards, "train", crop=crop, crops_per_image=crops)
    stream = BatchStream(ds, batch_size=batch, num_workers=workers, seed=0, rank=0, epochs_per_pass=per_pass)
    waits, starts = [], []
    t = time.perf_counter()
    for i in range(batches):
        before = (stream.epoch, stream.batches)
        stream.next()
        now = time.perf_counter()
        waits.append(now - t)
        starts.append(i == 0 or stream.batches == 1 and before != (stream.epoch, 0))
        t = now
    wall = sum(waits)
    in_starts = sum(w for w, s in zip(waits, starts) if s)
    return {"epochs_per_pass": per_pass, "batches_per_s": batches / wall, "crops_per_s": batches * batch / wall,
            "passes": sum(starts), "pass_start_share": in_starts / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shards")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--crops-per-image", type=int, default=8)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--epochs-per-pass", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # more workers than cores: on purpose
    print(f"workers {args.workers}, batch {args.batch}, crop {args.crop}, crops/image {args.crops_per_image}, "
          f"{args.batches} batches")
    print("| epochs/pass | passes started | batches/s | crops/s | wall share waiting for a pass's first batch |")
    print("|---|---|---|---|---|")
    for per_pass in args.epochs_per_pass:
        r = measure(args.shards, workers=args.workers, batch=args.batch, crop=args.crop, crops=args.crops_per_image,
                    batches=args.batches, per_pass=per_pass)
        print(f"| {per_pass} | {r['passes']} | {r['batches_per_s']:.1f} | {r['crops_per_s']:.0f} | "
              f"{r['pass_start_share']:.0%} |")


if __name__ == "__main__":
    main()
