"""The poster's two claims on domain data: Table 1 in-domain (faces GAN) and the cross-domain matrix.

    python benchmarks/cross_domain.py SHARDS_ROOT OUT_DIR [--domains photos faces aerial textures] [--max-images 12]
        [--table1-images 48] [--steps-1000-images 12] [--photos-max-side 256] [--workers 2]

SHARDS_ROOT holds one shard set per domain (``gencomp domains``; params.yaml ``domains``). Two evaluations, one
results table, one report (gencomp.report, which adds the cross-domain table, its heatmap and Table 1 in-domain
when results cover several domains):

- the matrix: every installed zoo model of each kind (GAN inversion at 100 steps with float z, the poster's
  Table 1 row; VAE-GAN at 28 channels with the codec's default refinement) and JPEG at quality 1, on the test
  split of each domain (``--max-images`` images; photos downscaled to ``--photos-max-side`` so GAN inversion of
  a whole photo stays affordable on a CPU);
- Table 1 in-domain: the faces GAN on ``--table1-images`` held-out faces (identities never seen in training) at
  100 steps with float z and 8/6/4-bit z, and 1000 steps on the first ``--steps-1000-images``, with JPEG (1%);
  every GAN row twice: the search minimising MSE (the poster's), and minimising 1 - SSIM + MSE
  (``objective=ssim``).

Writes OUT_DIR/results.parquet and OUT_DIR/report/ (cross_domain.md, cross_domain.png), and for Table 1
results_table1*.parquet with OUT_DIR/report_table1/ and report_table1_1000_steps/ (table1_in_domain_faces.md):
each report's rows share their images. Every (image, setting) is cached, so a rerun computes only what is new.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gencomp.data.eval_sets import shard_images
from gencomp.evaluate import expand_grid, run_grid, write_results
from gencomp.models import zoo
from gencomp.report import build_report


DOMAINS = ("photos", "faces", "aerial", "textures")
JPEG_Q1 = {"codec": "jpeg", "settings": {"quality": 1}, "label": "JPEG (1%)", "tables": ["table1"]}


def matrix_grid(precision: str = "float32") -> list[dict]:
    grid = []
    for model in zoo.models(installed_only=True):
        if model.kind == "gan":
            grid.append({"codec": "gan-inversion", "settings": {"model": model.name, "steps": 100, "bits": 32,
                                                                "precision": precision},
                         "label": f"GAN {model.name} (100 steps)", "tables": ["table1"]})
        else:
            grid.append({"codec": "vaegan", "settings": {"model": model.name, "channels": 28},
                         "label": f"VAE-GAN {model.name} (28 channels)", "tables": ["table2"]})
    grid.append({"codec": "jpeg", "settings": {"quality": 1}, "label": "JPEG (1%)", "tables": ["table1", "table2"]})
    return grid


SEARCHES = {"mse": "", "ssim": ", SSIM search"}  # the inversion's objective, and how a row's label says it


def table1_grid(model: str) -> list[dict]:
    rows = [({"steps": 100, "bits": 32}, "GAN (100 steps{})"), ({"steps": 100, "bits": 8}, "Lossy 8 bits{}"),
            ({"steps": 100, "bits": 6}, "Lossy 6 bits{}"), ({"steps": 100, "bits": 4}, "Lossy 4 bits{}")]
    return [{"codec": "gan-inversion", "settings": {"model": model, **s, "objective": objective},
             "label": label.format(suffix), "group": f"GAN inversion (100 steps{suffix})", "tables": ["table1"]}
            for objective, suffix in SEARCHES.items() for s, label in rows] + [JPEG_Q1]


def steps_1000_grid(model: str) -> list[dict]:
    """100 against 1000 steps, float z, each objective, with JPEG (1%)."""
    return [{"codec": "gan-inversion", "settings": {"model": model, "steps": steps, "bits": 32, "objective": objective},
             "label": f"GAN ({steps} steps{suffix})", "tables": ["table1"]}
            for objective, suffix in SEARCHES.items() for steps in (100, 1000)] + [JPEG_Q1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards_root", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--domains", nargs="+", default=None,
                    help=f"test domains (default: those of {', '.join(DOMAINS)} that SHARDS_ROOT holds; textures has "
                         "no model of its own, so every model is out of its domain there)")
    ap.add_argument("--max-images", type=int, default=12)
    ap.add_argument("--table1-images", type=int, default=48, help="0: the matrix only")
    ap.add_argument("--steps-1000-images", type=int, default=12)
    ap.add_argument("--photos-max-side", type=int, default=256, help="0: the shards' own size")
    ap.add_argument("--faces-model", default="gan-faces")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                    help="arithmetic of the matrix's GAN searches (gan-inversion's precision)")
    args = ap.parse_args(argv)
    if args.domains is None:
        args.domains = [d for d in DOMAINS if (args.shards_root / d).is_dir()]
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "cache"

    t0 = time.perf_counter()
    datasets = {d: shard_images(args.shards_root / d, "test", max_images=args.max_images,
                                max_side=args.photos_max_side if d == "photos" and args.photos_max_side else None) for d in args.domains}
    matrix = run_grid(expand_grid(matrix_grid(args.precision)), datasets, cache_dir=cache, workers=args.workers,
                      samples_dir=args.out / "samples", sample_images=1)
    write_results(matrix, args.out / "results.parquet")
    written = build_report(matrix, args.out / "report", samples_dir=args.out / "samples",
                           title="gencomp: models across domains")
    print(f"matrix: {len(matrix)} rows in {time.perf_counter() - t0:.0f} s:", ", ".join(sorted(written)), flush=True)

    if "faces" in args.domains and args.table1_images > 0 and args.faces_model in zoo.names():
        # its own results and report: every row of a table on the same images (the report means over the images
        # on which all of a table's rows succeeded)
        t1 = time.perf_counter()
        faces = {"faces": shard_images(args.shards_root / "faces", "test", max_images=args.table1_images)}
        table1 = run_grid(expand_grid(table1_grid(args.faces_model)), faces, cache_dir=cache, workers=args.workers)
        write_results(table1, args.out / "results_table1.parquet")
        build_report(table1, args.out / "report_table1", dataset="faces", title="gencomp: Table 1 on faces")
        few = {"faces": faces["faces"][: args.steps_1000_images]}
        steps_1000 = run_grid(expand_grid(steps_1000_grid(args.faces_model)), few, cache_dir=cache, workers=args.workers)
        write_results(steps_1000, args.out / "results_table1_1000_steps.parquet")
        build_report(steps_1000, args.out / "report_table1_1000_steps", dataset="faces",
                     title="gencomp: Table 1 on faces, 100 against 1000 steps")
        print(f"table 1: {len(table1) + len(steps_1000)} rows in {time.perf_counter() - t1:.0f} s", flush=True)
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
