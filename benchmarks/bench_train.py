"""Training throughput per preset: a few steps of each, images/s, and the projected wall time of the full preset.

    python benchmarks/bench_train.py                      # gan + vaegan, demo and cpu-full (gpu too on CUDA)
    python benchmarks/bench_train.py --kinds vaegan --presets demo --steps 20
    python benchmarks/bench_train.py --shards data/shards # through the real shard loader
    python benchmarks/bench_train.py --kinds vaegan --presets gpu --amp auto bf16 --set width=64 batch_size=8
        # fp32 against bf16 autocast (amp=bf16) on this CPU, with any preset keys changed

Without ``--shards`` the crops come from photos in ../shared/data/photos (decoded through the one decode path,
downscaled to the preset's ``downscale_to``, held in memory), so the number measures the model step, not JPEG
decoding. Each preset runs twice (2 steps, then 2 + N) and the difference times N steps without set-up.
"full preset" = all the preset's steps (gan: encoder steps too, costed like GAN steps) at the measured wall rate.
cpu-s/step is this process's CPU time per step: on a shared machine it is steadier than wall time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import IterableDataset

from gencomp.data.images import open_image
from gencomp.train.loop import train
from gencomp.train.presets import resolve_preset

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "photos"


class PhotoCrops(IterableDataset):
    """Random crops from a handful of decoded photos (in memory), deterministic per epoch."""

    def __init__(self, photos: list[torch.Tensor], crop: int, count: int = 10_000):
        self.photos, self.crop, self.count, self.epoch = photos, crop, count, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.epoch)
        for _ in range(self.count):
            img = self.photos[int(torch.randint(len(self.photos), (), generator=g))]
            y = int(torch.randint(img.shape[1] - self.crop + 1, (), generator=g))
            x = int(torch.randint(img.shape[2] - self.crop + 1, (), generator=g))
            yield img[:, y:y + self.crop, x:x + self.crop]


def load_photos(folder: Path, count: int, downscale_to: int) -> list[torch.Tensor]:
    photos = []
    for path in sorted(folder.rglob("*.jp*g"))[:count]:
        img = open_image(path, draft_size=(downscale_to, downscale_to))
        img.thumbnail((downscale_to, downscale_to))
        photos.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255)
    if not photos:
        raise SystemExit(f"no JPEG photos under {folder}; pass --photos or --shards")
    return photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", nargs="+", default=["gan", "vaegan"])
    ap.add_argument("--presets", nargs="+", default=None, help="default: demo cpu-full (+ gpu on CUDA)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per preset")
    ap.add_argument("--threads", type=int, default=None, help="override the presets' 'threads' (0: torch's default)")
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--shards", type=Path, default=None, help="use the shard loader on this folder instead")
    ap.add_argument("--amp", nargs="+", default=["auto"], help="arithmetics to time, each a row: auto, bf16, off")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="preset keys to change (YAML values)")
    args = ap.parse_args()
    changes = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    presets = args.presets or (["demo", "cpu-full"] + (["gpu"] if torch.cuda.is_available() else []))

    photos = None if args.shards else load_photos(args.photos, 16, 512)
    print(f"device: {'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}, "
          f"threads: {'preset' if args.threads is None else args.threads}")
    print(f"{'kind':7} {'preset':9} {'amp':5} {'batch':>5} {'crop':>4} {'img/s':>8} {'steps/s':>8} "
          f"{'cpu-s/step':>10} {'full preset':>14}")
    # one throw-away run first: imports, dvclive's first start and allocator warm-up stay out of the numbers
    warm = None if args.shards else PhotoCrops(photos, 32)
    with tempfile.TemporaryDirectory() as tmp:
        train("gan", data_dir=args.shards, out_dir=tmp, progress=False, dataset=warm,
              overrides={"steps": 2, "encoder_steps": 1, "tile": 32, "g_width": 4, "d_width": 4, "e_width": 4})
    for kind in args.kinds:
        for name in presets:
            for amp in args.amp:
                time_preset(kind, name, amp, changes, args, photos)


def time_preset(kind: str, name: str, amp: str, changes: dict, args: argparse.Namespace, photos) -> None:
    cfg = resolve_preset(kind, name, {**changes, "amp": amp})
    crop = cfg["tile"] if kind == "gan" else cfg["crop"]
    steps = args.steps
    overrides = {**changes, "amp": amp, "steps": steps, "checkpoint_every": 10**9, "val_every": 10**9,
                 "log_every": 10**9}
    if args.threads is not None:
        overrides["threads"] = args.threads
    if kind == "gan":
        overrides["encoder_steps"] = 0
    if kind == "vaegan" and "adv_start" not in changes:
        overrides["adv_start"] = 0  # time the full step, adversarial term included
    # two runs, 2 steps and 2 + N steps: the difference is the cost of N steps without the set-up
    cost = []
    for run_steps in (2, steps + 2):
        dataset = None if args.shards else PhotoCrops(photos, crop)
        with tempfile.TemporaryDirectory() as tmp:
            c0, t0 = time.process_time(), time.perf_counter()
            train(kind, data_dir=args.shards, out_dir=tmp, preset=name,
                  overrides={**overrides, "steps": run_steps}, dataset=dataset, progress=False)
            cost.append((time.process_time() - c0, time.perf_counter() - t0))
    cpu_per_step = (cost[1][0] - cost[0][0]) / steps
    wall_per_step = (cost[1][1] - cost[0][1]) / steps
    ips = cfg["batch_size"] / wall_per_step
    total_steps = cfg["steps"] + cfg.get("encoder_steps", 0)
    print(f"{kind:7} {name:9} {amp:5} {cfg['batch_size']:>5} {crop:>4} {ips:>8.1f} {1 / wall_per_step:>8.2f} "
          f"{cpu_per_step:>10.3f} {total_steps * wall_per_step / 60:>10.1f} min", flush=True)

if __name__ == "__main__":
    main()
