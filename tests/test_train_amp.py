"""``amp=bf16``: bf16 autocast on a CPU too (about 2x the training steps on CPUs with AMX or AVX512-BF16).

"auto" keeps fp32 on a CPU, so a CPU run's numbers do not depend on which instructions the CPU has unless asked.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from test_train import TINY_VAEGAN, AstronautCrops
from torch import nn

from gencomp.models import load_model
from gencomp.train import runtime
from gencomp.train.loop import train
from gencomp.train.presets import resolve_preset
from gencomp.train.runtime import Runtime

requires_cpu = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's autocast is what is tested")


@requires_cpu
@pytest.mark.parametrize(("amp", "dtype"), [("auto", torch.float32), ("off", torch.float32),
                                            ("bf16", torch.bfloat16)])
def test_runtime_autocast_on_cpu(amp, dtype):
    cfg = resolve_preset("vaegan", "demo", {"amp": amp})
    conv = nn.Conv2d(3, 4, 3)
    with Runtime(cfg) as rt, rt.autocast():
        assert conv(torch.rand(1, 3, 8, 8)).dtype == dtype
        # channels_last goes with bf16 on a CPU (oneDNN's fast layout for it), not with fp32
        assert rt.channels_last == (dtype == torch.bfloat16)
        assert rt.to_device(torch.rand(1, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last) == rt.channels_last


@requires_cpu
def test_channels_last_off_is_obeyed():
    cfg = resolve_preset("vaegan", "demo", {"amp": "bf16", "channels_last": "off"})
    with Runtime(cfg) as rt:
        assert rt.bf16 and not rt.channels_last


def test_amp_choices_are_checked():
    with pytest.raises(ValueError, match="one of"):
        resolve_preset("vaegan", "demo", {"amp": "fp16"})


def _train(out, amp, **extra):
    return train("vaegan", data_dir=None, out_dir=out, overrides=dict(TINY_VAEGAN, amp=amp, **extra),
                 dataset=AstronautCrops(32), val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)


@requires_cpu
def test_bf16_training_runs_and_writes_a_float32_model(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # no emulation warning on any CPU
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        bf16 = _train(tmp_path / "bf16", "bf16")
    fp32 = _train(tmp_path / "fp32", "auto")
    rows = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == bf16["step"] and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    # autocast was in effect: the same seed and data give other weights than fp32 arithmetic
    assert bf16["weights_sha256"] != fp32["weights_sha256"]
    model = load_model(tmp_path / "bf16" / "model.pt").model
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert bf16["val"]["psnr_c28"] > 5


@requires_cpu
def test_bf16_without_cpu_support_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="emulated"):
        _train(tmp_path / "run", "bf16", steps=1, adv_start=10)


def test_an_fp32_checkpoint_resumes_in_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    out = tmp_path / "run"
    first = _train(out, "auto", steps=3)
    resumed = train("vaegan", data_dir=None, out_dir=out, overrides=dict(TINY_VAEGAN, amp="bf16", steps=5),
                    resume=True, dataset=AstronautCrops(32), val_dataset=AstronautCrops(32, count=8, seed=1),
                    progress=False)
    assert first["step"] == 3 and resumed["resumed_from_step"] == 3 and resumed["step"] == 5


@requires_cpu
def test_bf16_gan_training_runs(tmp_path, monkeypatch):
    from test_train import TINY_GAN

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    summary = train("gan", data_dir=None, out_dir=tmp_path, overrides=dict(TINY_GAN, amp="bf16", recon_weight=1.0),
                    dataset=AstronautCrops(32), val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    assert summary["step"] == 7 and summary["val"]["inversion_psnr"] > 5
    generator = load_model(tmp_path / "model.pt").generator
    assert {p.dtype for p in generator.parameters()} == {torch.float32}
