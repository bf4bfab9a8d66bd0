"""Plot a training run's validation PSNR/SSIM and training loss from its metrics files.

    python benchmarks/plot_training.py RUN_DIR OUT.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(run_dir: Path, out: Path) -> None:
    val = read_jsonl(run_dir / "val.jsonl")
    train = read_jsonl(run_dir / "metrics.jsonl")
    fig, (ax_psnr, ax_ssim, ax_loss) = plt.subplots(1, 3, figsize=(14, 3.8))
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
    main(Path(sys.argv[1]), Path(sys.argv[2]))
