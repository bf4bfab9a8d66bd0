"""Plot a training run's validation PSNR/SSIM and training loss from its metrics files.

    python benchmarks/plot_training.py RUN_DIR OUT.png [--window 200]

A VAE-GAN run trained at random channel counts also gets its learning curve at C = 28 from the training steps
themselves: PSNR of the reconstruction and the rate in bits per pixel, each a moving mean over ``--window`` steps
at that channel count (validations are rare in the long CPU and GPU recipes).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_jsonl(path: Path) -> list[dict]:
    """The records of ``path``; none while a run has not validated yet."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def moving_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for k, v in enumerate(values):
        total += v - (values[k - window] if k >= window else 0.0)
        out.append(total / min(k + 1, window))
    return out


def plot_rate_distortion(ax, train: list[dict], channels: int, window: int) -> None:
    """Training PSNR and bpp at ``channels`` against the step, each a moving mean over ``window`` such steps."""
    rows = [m for m in train if m.get("channels") == channels and m.get("recon", 0) > 0 and "bpp" in m]
    steps = [m["step"] for m in rows]
    ax.plot(steps, moving_mean([-10 * math.log10(m["recon"]) for m in rows], window), color="C0")
    ax.set_ylabel("training PSNR (dB)", color="C0")
    rate = ax.twinx()
    rate.plot(steps, moving_mean([m["bpp"] for m in rows], window), color="C3")
    rate.set_ylabel("bpp", color="C3")
    ax.set(title=f"C = {channels}, moving mean over {window} steps", xlabel="step")


def main(run_dir: Path, out: Path, window: int = 200) -> None:
    val = read_jsonl(run_dir / "val.jsonl")
    train = read_jsonl(run_dir / "metrics.jsonl")
    curve = any(m.get("channels") == 28 and "bpp" in m for m in train)
    fig, axes = plt.subplots(1, 4 if curve else 3, figsize=(19 if curve else 14, 3.8))
    ax_psnr, ax_ssim, ax_loss = axes[:3]
    if curve:
        plot_rate_distortion(axes[3], train, 28, window)
    steps = [v["step"] for v in val]
    for key in sorted({k for v in val for k in v if k.startswith(("psnr", "inversion_psnr"))}):
        ax_psnr.plot(steps, [v.get(key) for v in val], marker="o", label=key)
    for key in sorted({k for v in val for k in v if k.startswith(("ssim", "inversion_ssim"))}):
        ax_ssim.plot(steps, [v.get(key) for v in val], marker="o", label=key)
    for key in ("loss", "recon", "loss_g", "loss_d", "loss_e"):
        points = [(m["step"], m[key]) for m in train if key in m]
        if points:
            ax_loss.plot(*zip(*points), label=key, linewidth=0.6)
    ax_psnr.set(title="validation PSNR (dB)", xlabel="step")
    ax_ssim.set(title="validation SSIM", xlabel="step")
    ax_loss.set(title="training losses", xlabel="step", yscale="log")
    for ax in (ax_psnr, ax_ssim, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    fig.savefig(out, dpi=100, metadata={"Software": None})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--window", type=int, default=200, help="steps per moving mean of the C = 28 learning curve")
    args = ap.parse_args()
    main(args.run_dir, args.out, args.window)
