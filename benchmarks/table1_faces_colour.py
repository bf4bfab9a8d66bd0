"""Table 1 in-domain (the faces GAN on held-out faces) with and without GAN inversion's per-tile colour
parameters, for both searches (MSE, the poster's; SSIM), float32 and 8-bit z, against JPEG (1%):

    python benchmarks/table1_faces_colour.py OUT_DIR [--images 32] [--faces ../shared/data/domains/faces]

Builds the faces shards (params.yaml's `domains.faces` cut: CelebA-128, identities never in two splits) into
OUT_DIR/shards/faces unless they are there, evaluates the test split with the zoo's gan-faces, and writes
OUT_DIR/results.parquet and OUT_DIR/report/ (table1.md). Every (image, setting) is cached under OUT_DIR/cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gencomp.config import load_params
from gencomp.data.domains import build_domain_shards
from gencomp.data.eval_sets import shard_images
from gencomp.evaluate import expand_grid, run_grid, write_results
from gencomp.report import build_report


def grid(model: str) -> list[dict]:
    rows = []
    for colour in ("none", "affine"):
        for objective in ("mse", "ssim"):
            for bits in (32, 8):
                rows.append({"codec": "gan-inversion", "tables": ["table1"],
                             "settings": {"model": model, "steps": 100, "bits": bits, "objective": objective,
                                          "colour": colour},
                             "label": f"GAN {bits} bits, {objective} search, colour {colour}"})
    return rows + [{"codec": "jpeg", "settings": {"quality": 1}, "label": "JPEG (1%)", "tables": ["table1"]}]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--faces", default=None, help="folder of the faces set (default: params.yaml's)")
    p.add_argument("--model", default="gan-faces")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    shards = args.out / "shards" / "faces"
    if not (shards / "_manifest.json").exists():
        entry = load_params().domains.entries["faces"]
        build_domain_shards(entry.spec("faces"), shards, folder=args.faces)
    images = shard_images(shards, "test", max_images=args.images)
    start = time.monotonic()
    rows = run_grid(expand_grid(grid(args.model)), {"faces": images}, workers=args.workers, cache_dir=args.out / "cache")
    print(f"{len(images)} faces, {time.monotonic() - start:.0f} s", flush=True)
    write_results(rows, args.out / "results.parquet")
    build_report(args.out / "results.parquet", args.out / "report", dataset="faces")
    print((args.out / "report" / "table1.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
