"""Checkpoints written by earlier training code resume with today's code, and continue the run step for step.

tests/fixtures/old_checkpoints/<kind>/ holds a checkpoint written part way through a tiny run by the training
code of commit 6eef0d5 (two separate loops, before the shared ``train()`` skeleton), and the per-step losses of
that run left uninterrupted (make_fixture.py there regenerates them). Resuming the checkpoint must give the
losses the old code computed for the remaining steps: same checkpoint layout, same RNG streams, same maths.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gencomp.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gencomp.train.loop import train
from tests.test_train import AstronautCrops

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "old_checkpoints"
# 12 crops per epoch at batch 4 = 3 batches: each checkpoint lands mid-epoch, after an epoch boundary
CASES = {
    "gan": dict(steps=6, encoder_steps=4, batch_size=4, tile=32, latent_dim=16, g_width=4, d_width=4, e_width=4,
                checkpoint_every=100, val_every=100, log_every=1),
    "vaegan": dict(steps=10, batch_size=4, crop=32, width=8, d_width=4, adv_start=3, prior_fit_batches=1,
                   checkpoint_every=100, val_every=100, log_every=1, rate_lambda=0.01, msssim_weight=0.1),
}
# where the old run's checkpoint was taken (make_fixture.py sets checkpoint_every to it: a resumable setting)
CHECKPOINT_STEP = {"gan": 7, "vaegan": 4}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_checkpoint_of_the_earlier_code_resumes_where_it_stopped(tmp_path, kind):
    torch.set_num_threads(1)
    old = FIXTURES / kind
    state = load_checkpoint(old / "checkpoint.pt")
    assert state["kind"] == kind and state["step"] == CHECKPOINT_STEP[kind]
    out = tmp_path / kind
    out.mkdir()
    shutil.copyfile(old / "checkpoint.pt", out / "checkpoint.pt")
    # the old run's log up to the checkpoint, as the killed run would have left it
    reference = _lines(old / "metrics.jsonl")
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reference))

    summary = train(kind, data_dir=None, out_dir=out, overrides=CASES[kind], resume=True,
                    dataset=AstronautCrops(32, count=12), progress=False)
    assert summary["resumed_from_step"] == CHECKPOINT_STEP[kind]
    resumed = _lines(out / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [r["step"] for r in reference]
    for new, expected in zip(resumed[CHECKPOINT_STEP[kind]:], reference[CHECKPOINT_STEP[kind]:]):
        assert new.keys() == expected.keys()
        assert new["phase"] == expected["phase"] and new["epoch"] == expected["epoch"]
        for key in expected.keys() - {"step", "epoch", "phase"}:
            value = expected[key]
            # bit for bit on the machine that made the fixture; other CPUs may round convolutions differently
            assert new[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (new["step"], key)


def test_a_checkpoint_of_an_unknown_format_is_refused_clearly(tmp_path):
    state = load_checkpoint(FIXTURES / "vaegan" / "checkpoint.pt")
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, state)
    raw = torch.load(path, weights_only=True)
    raw["format"] = 99
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="not a gencomp training checkpoint of format 1"):
        train("vaegan", data_dir=None, out_dir=path.parent, overrides=CASES["vaegan"], resume=True,
              dataset=AstronautCrops(32, count=12), progress=False)
