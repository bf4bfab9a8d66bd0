"""A run killed with SIGKILL resumes from its last checkpoint with exactly the losses of an uninterrupted run.

The killed and the resumed runs are subprocesses; the reference runs in the test process. All run with one
thread, so the comparison is bit for bit. The data
stream is slowed down (a sleep per crop) so the kill reliably lands between a checkpoint and the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import AstronautCrops

from gencomp.train.checkpoint import load_checkpoint
from gencomp.train.loop import train

TESTS_DIR = Path(__file__).resolve().parent

SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests_dir!r})
from test_train import AstronautCrops
from gencomp.train.loop import train
kind, out, resume, delay = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])
overrides = json.loads(sys.argv[5])
train(kind, data_dir=None, out_dir=out, overrides=overrides, resume=resume,
      dataset=AstronautCrops(32, count=12, delay_s=delay), progress=False)
"""

CASES = {
    # 12 crops per epoch at batch 4 = 3 batches: the run crosses epochs, and the kill lands mid-epoch
    "gan": dict(steps=6, encoder_steps=4, batch_size=4, tile=32, g_width=4, d_width=4, e_width=4,
                checkpoint_every=4, val_every=100, log_every=1),
    "vaegan": dict(steps=10, batch_size=4, crop=32, width=8, d_width=4, adv_start=3, prior_fit_batches=1,
                   checkpoint_every=4, val_every=100, log_every=1, rate_lambda=0.01, msssim_weight=0.1),
}


def _run(script: Path, kind: str, out: Path, *, resume: bool, delay: float, wait: bool = True):
    cmd = [sys.executable, str(script), kind, str(out), "1" if resume else "0", str(delay), json.dumps(CASES[kind])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    if wait:
        subprocess.run(cmd, check=True, env=env, timeout=120, capture_output=True)
        return None
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _losses(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["gan", "vaegan"])
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, kind):
    script = tmp_path / "run_training.py"
    script.write_text(SCRIPT.format(tests_dir=str(TESTS_DIR)))
    total = CASES[kind]["steps"] + CASES[kind].get("encoder_steps", 0)

    # the reference runs in this process (tests run single-threaded, like the subprocesses): one start-up less
    reference = tmp_path / "reference"
    train(kind, data_dir=None, out_dir=reference, overrides=CASES[kind], dataset=AstronautCrops(32, count=12),
          progress=False)

    killed = tmp_path / "killed"
    proc = _run(script, kind, killed, resume=False, delay=0.1, wait=False)
    ckpt = killed / "checkpoint.pt"
    deadline = time.monotonic() + 90
    while not ckpt.exists():
        assert proc.poll() is None, f"training exited early: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_at = load_checkpoint(ckpt)["step"]
    assert stopped_at < total, "the run finished before the kill; the test proved nothing"
    assert not (killed / "model.pt").exists()

    _run(script, kind, killed, resume=True, delay=0.0)
    resumed_rows, reference_rows = _losses(killed), _losses(reference)
    assert [r["step"] for r in resumed_rows] == list(range(1, total + 1))
    assert resumed_rows == reference_rows  # every loss, bit for bit, including the steps after the kill
    summary = json.loads((killed / "train_summary.json").read_text())
    assert summary["resumed_from_step"] == stopped_at
    assert summary["weights_sha256"] == json.loads((reference / "train_summary.json").read_text())["weights_sha256"]
