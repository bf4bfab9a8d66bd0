"""Check the runs of benchmarks/gpu_train_ship.sh on held-out images, and write their model files for shipping.

    python benchmarks/gpu_check.py RUNS_DIR SHARDS_ROOT OUT_DIR [--max-images 24]

For every ``RUNS_DIR/<kind>-<domain>[-variant]/model.pt``: the test split of ``SHARDS_ROOT/<domain>`` (never seen in
training) is coded with the model, and with the zoo's model of the same kind (VAE-GAN: vaegan-default; GAN:
gan-<domain>, where installed, and JPEG at quality 1, the poster's baseline), on the device the run used. VAE-GAN
at C = 28, 8, 2 with no refinement (the model as trained); GAN inversion with 100 steps and float z (the poster's Table 1 row). Also the periodic pattern on the
VAE-GAN's 16-px latent grid (``gencomp.grid_artifacts``), where the images are large enough; with ``--kodak DIR``,
photo VAE-GANs at C = 28 on those images too (the README's benchmark set). Results go to
``OUT_DIR/check.json``; each model is written with float16 weights to ``OUT_DIR/<run>.pt`` (loading casts back).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gencomp import metrics
from gencomp.codecs import get_codec
from gencomp.data.eval_sets import folder_images, shard_images
from gencomp.grid_artifacts import grid_pattern
from gencomp.models import zoo
from gencomp.models.store import load_model, save_model



def score(codec, images) -> dict[str, float]:
    psnr, ssim, msssim, bits, pixels, pattern = [], [], [], 0.0, 0, []
    for _, _, img in images:
        data = codec.encode(img)
        rec = codec.decode(data)
        psnr.append(metrics.psnr(img, rec))
        ssim.append(metrics.ssim(img, rec))
        msssim.append(metrics.ms_ssim(img, rec))
        bits += 8 * len(data)
        pixels += img.width * img.height
        if min(img.size) >= 64 * 4:
            pattern.append(grid_pattern(img, rec, 16).pattern)
    bpp = bits / pixels
    out = {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "ms_ssim": float(np.mean(msssim)),
           "bpp": bpp, "cr": metrics.compression_ratio(bpp), "images": len(images)}
    if pattern:
        out["grid16_pattern"] = float(np.mean(pattern))
    return out


def half_copy(src: Path, dst: Path) -> None:
    payload = torch.load(src, map_location="cpu", weights_only=True)
    states = {part: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
              for part, sd in payload["state_dict"].items()}
    save_model(dst, kind=payload["kind"], config=payload["config"], state_dict=states,
               metadata={**payload.get("metadata", {}), "weights_dtype": "float16"})
    load_model(dst)  # refuses a broken copy here, not after the trip back


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("shards_root", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-images", type=int, default=24)
    ap.add_argument("--copy-run", metavar="NAME", help="only write RUNS_DIR/NAME's model file to OUT_DIR (what the "
                    "recipe does after every training phase, so that a run cut short still returns its models)")
    ap.add_argument("--kodak", type=Path, help="a folder of Kodak images: photo VAE-GANs are also scored there, "
                    "at full size, C = 28, against the shipped default")
    args = ap.parse_args(argv)
    if args.copy_run:
        half_copy(args.runs / args.copy_run / "model.pt", args.out / f"{args.copy_run}.pt")
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report: dict[str, dict] = {}
    runs = sorted(p for p in args.runs.iterdir() if (p / "model.pt").is_file())
    for run in runs:  # every model file first: a check cut short by the device's time limit loses numbers only
        try:
            half_copy(run / "model.pt", args.out / f"{run.name}.pt")
        except Exception as exc:
            report[run.name] = {"error": f"half copy: {type(exc).__name__}: {exc}"}
    for run in runs:
        if run.name in report:
            continue
        kind, domain = run.name.split("-")[:2]
        t0 = time.perf_counter()
        entry: dict = {"kind": kind, "domain": domain}
        try:
            summary = json.loads((run / "train_summary.json").read_text())
            entry["train"] = {k: summary.get(k) for k in ("step", "elapsed_s", "steps_run", "val")}
            images = shard_images(args.shards_root / domain, "test", max_images=args.max_images)
            if kind == "vaegan":
                for label, model in (("trained", run / "model.pt"), ("shipped", "vaegan-default")):
                    for channels in (28, 8, 2):
                        codec = get_codec("vaegan", model=str(model), channels=channels, refine_steps=0,
                                          device=device)
                        entry[f"{label}_c{channels}"] = score(codec, images)
                if domain == "photos" and args.kodak:
                    kodak = folder_images(args.kodak)
                    for label, model in (("trained", run / "model.pt"), ("shipped", "vaegan-default")):
                        codec = get_codec("vaegan", model=str(model), channels=28, refine_steps=0, device=device)
                        entry[f"kodak_{label}_c28"] = score(codec, kodak)
            else:
                images = images[: max(1, args.max_images // 2)]
                shipped = [("shipped", f"gan-{domain}")] if f"gan-{domain}" in zoo.installed_names("gan") else []
                for label, model in [("trained", run / "model.pt"), *shipped]:
                    codec = get_codec("gan-inversion", model=str(model), steps=100, bits=32, device=device)
                    entry[f"{label}_steps100_float"] = score(codec, images)
                entry["jpeg_q1"] = score(get_codec("jpeg", quality=1), images)
        except Exception as exc:  # one broken run must not hide the others' numbers
            entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["check_s"] = round(time.perf_counter() - t0, 1)
        report[run.name] = entry
        print(run.name, json.dumps(entry, default=float), flush=True)
        (args.out / "check.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
