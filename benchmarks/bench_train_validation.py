"""What one training validation costs, through the real codec, against the training code of an earlier commit.

    python benchmarks/bench_train_validation.py              # baseline: commit 6eef0d5 (in-loop validation)
    python benchmarks/bench_train_validation.py --base REV

Validation runs at the demo presets' sizes (vaegan: 2 batches of 8 crops of 64 px, 5 channel counts; gan: 2
batches of 16 tiles of 32 px). Each code runs a tiny training with no mid-run validation and with one after every
step, twice each (after one warm-up run); the median difference per step is the cost of one validation.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_train import AstronautCrops  # noqa: E402

from gencomp.train.loop import train  # noqa: E402


def _old_train(base: str):
    source = subprocess.run(["git", "show", f"{base}:gencomp/train/loop.py"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType("old_loop")
    exec(compile(source, f"{base}:gencomp/train/loop.py", "exec"), module.__dict__)
    return module.train


def _seconds(fn, kind: str, crop: int, overrides: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fn(kind, data_dir=None, out_dir=Path(tmp), overrides=overrides, dataset=AstronautCrops(crop, count=32),
           val_dataset=AstronautCrops(crop, count=32, seed=1), progress=False)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="6eef0d5", help="commit whose training code is the baseline")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| kind | code | one validation (s) |\n|---|---|---|")
    for kind, crop, extra in (("vaegan", 64, {}), ("gan", 32, {"encoder_steps": 1})):
        base = dict(steps=2, checkpoint_every=100, log_every=100, **extra)
        steps = base["steps"] + base.get("encoder_steps", 0)
        for name, fn in ((args.base, _old_train(args.base)), ("this checkout", train)):
            _seconds(fn, kind, crop, dict(base, val_every=1000))  # warm-up: imports, first allocations
            plain = [_seconds(fn, kind, crop, dict(base, val_every=1000)) for _ in range(2)]
            validating = [_seconds(fn, kind, crop, dict(base, val_every=1)) for _ in range(2)]
            cost = (statistics.median(validating) - statistics.median(plain)) / steps
            print(f"| {kind} | {name} | {cost:.2f} |")


if __name__ == "__main__":
    main()
