"""The one-command training recipes (benchmarks/cpu_train_ship.sh over benchmarks/gpu_train_ship.sh) run end to
end on a CPU: two DDP processes, two phases, the model file and the check brought to OUT."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gencomp.data.shards import write_shards
from gencomp.models.store import load_model
from gencomp.train.runtime import cpu_has_native_bf16

REPO = Path(__file__).resolve().parents[1]
# a tiny model on tiny crops: the recipe's mechanics, not its quality
# (the width stays the shipped model's, which the recipe starts from)
TINY = ("--set d_width=4 --set crop=32 --set downscale_to=64 --set hyper_channels=8 "
        "--set crops_per_image=2 --set warmup_steps=0")


def _photo_shards(root: Path, count: int = 24) -> None:
    from skimage import data

    photo = data.astronaut()
    rng = np.random.default_rng(0)
    imgs = root / "imgs"
    imgs.mkdir(parents=True)
    rows = []
    for k in range(count):
        y, x = rng.integers(0, photo.shape[0] - 96, size=2)
        path = imgs / f"{k:02d}.png"
        Image.fromarray(photo[y:y + 96, x:x + 96]).save(path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append(dict(path=path.name, sha256=sha, keep=True, status="ok", cluster_key=sha, width=96,
                         height=96, format="PNG", url=""))
    pd.DataFrame(rows).to_parquet(root / "clusters.parquet")
    write_shards(root / "clusters.parquet", imgs, root / "shards" / "photos",
                 split_fractions={"train": 0.5, "val": 0.25, "test": 0.25})


def test_the_cpu_recipe_trains_in_two_ddp_phases_and_brings_back_a_checked_model(tmp_path):
    _photo_shards(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, PHASE1_S="3", PHASE2_S="2", CHECK_IMAGES="2",
               EXTRA_VAEGAN=TINY, PYTHONPATH=str(REPO))
    result = subprocess.run(["bash", "benchmarks/cpu_train_ship.sh", str(tmp_path / "shards"), str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    run = out / "work" / "runs" / "vaegan-photos-hyper"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2  # torchrun's two processes, one per core
    assert summary["entropy_model"] == "hyperprior"
    assert summary["resumed_from_step"] is not None  # phase 2 continued phase 1's run: the anneal
    assert summary["step"] > summary["resumed_from_step"]
    assert summary["config"]["batch_size"] == 8  # 16 crops a step over the two processes
    # bf16 autocast where this CPU computes bf16 in hardware (about 2x the steps), fp32 elsewhere
    assert summary["config"]["amp"] == ("bf16" if cpu_has_native_bf16() else "auto")
    assert summary["samples_consumed"] == 16 * summary["step"]
    shipped = load_model(out / "vaegan-photos-hyper.pt")  # the half-precision copy, ready for ship_model.py
    assert shipped.metadata["weights_dtype"] == "float16"

    check = json.loads((out / "check.json").read_text())["vaegan-photos-hyper"]
    assert "error" not in check, check
    for label in ("trained", "shipped"):
        for channels in (28, 8, 2):
            scores = check[f"{label}_c{channels}"]
            assert scores["images"] == 2 and scores["bpp"] > 0 and scores["psnr"] > 5
    with tarfile.open(out / "logs.tar.gz") as logs:
        assert any(name.endswith("metrics.jsonl") for name in logs.getnames())

    # called again on the same OUT_DIR, the recipe continues the run: training accumulates across calls
    shorter = dict(env, PHASE1_S="1", PHASE2_S="1", CHECK_IMAGES="1")
    again = subprocess.run(["bash", "benchmarks/cpu_train_ship.sh", str(tmp_path / "shards"), str(out)],
                           cwd=REPO, env=shorter, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    continued = json.loads((run / "train_summary.json").read_text())
    # phase 2's start lies past the first call's end: phase 1 went on from that call's checkpoint (the CLI
    # refuses to start a fresh run over a checkpoint, so a phase 1 that did not resume would have failed)
    assert continued["resumed_from_step"] > summary["step"] and continued["step"] > continued["resumed_from_step"]


def test_a_recipe_whose_training_fails_says_so_and_exits_non_zero(tmp_path):
    _photo_shards(tmp_path)
    # a width the shipped weights cannot start: the run refuses its init_from at once (without the checkerboard
    # context, whose weights depend only on the latent channels and would fit)
    env = dict(os.environ, PYTHON=sys.executable, PHASE1_S="3", PHASE2_S="2", CHECK_IMAGES="2",
               EXTRA_VAEGAN=TINY + " --set width=8 --set hyper_context=none", PYTHONPATH=str(REPO))
    result = subprocess.run(["bash", "benchmarks/cpu_train_ship.sh", str(tmp_path / "shards"), str(tmp_path / "out")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "failed:" in result.stdout and "vaegan-photos-hyper-1 (exit 1" in result.stdout
    assert not (tmp_path / "out" / "vaegan-photos-hyper.pt").exists()
