"""What only a GPU can check: training under bf16 autocast, channels_last and torch.compile, and codec files
crossing between CPU and GPU. Every test here is skipped without CUDA (CI has none); on a GPU machine run
``pytest tests/test_gpu.py``. The CPU paths are covered by the rest of the suite.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gencomp.codecs import get_codec
from gencomp.models import load_model
from gencomp.train.checkpoint import load_checkpoint
from gencomp.train.loop import train
from tests.test_train import TINY_GAN, TINY_VAEGAN, AstronautCrops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(np.ascontiguousarray(data.astronaut()[96:352, 64:448]))  # 384 x 256, a real photo


@pytest.mark.parametrize(("codec", "settings"), [("vaegan", {}), ("vaegan", {"channels": 8}),
                                                 ("gan-inversion", {"steps": 20})])
def test_a_file_made_on_either_device_decodes_on_either(codec, settings):
    """The shipped models: GPU and CPU encodes give files of about the same size and quality, and each file
    decodes on both devices to nearly the same pixels (the latent is exact; only the decoder's float
    arithmetic differs)."""
    image = _photo()
    cpu = get_codec(codec, **settings)
    gpu = get_codec(codec, device="cuda", **settings)
    assert gpu.device == "cuda"
    made_on = {"cpu": cpu.encode(image), "cuda": gpu.encode(image)}
    quality = {}
    for where, data in made_on.items():
        on_cpu, on_gpu = cpu.decode(data), gpu.decode(data)
        assert on_cpu.size == on_gpu.size == image.size
        assert _psnr(on_cpu, on_gpu) > 40, f"{codec} file made on {where}: CPU and GPU decodes differ"
        quality[where] = _psnr(on_cpu, image)
    assert abs(quality["cuda"] - quality["cpu"]) < 0.5, quality
    assert abs(len(made_on["cuda"]) - len(made_on["cpu"])) <= 0.05 * len(made_on["cpu"]) + 8


@pytest.mark.parametrize("kind", ["gan", "vaegan"])
def test_training_on_gpu_with_bf16_channels_last_and_compile_then_resume(kind, tmp_path):
    tiny = dict(TINY_GAN if kind == "gan" else TINY_VAEGAN, compile=True)
    out = tmp_path / kind
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    first = train(kind, data_dir=None, out_dir=out, overrides=tiny, dataset=AstronautCrops(32),
                  val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    assert first["device"].startswith("cuda")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == tf32  # scoped to train()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [v for r in rows for k, v in r.items() if k.startswith("loss")]
    assert losses and all(np.isfinite(losses))

    # the files are device-free: the checkpoint and the model load on the CPU and the model compresses there
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert all(t.device.type == "cpu" for m in ckpt["models"].values() for t in m.values())
    loaded = load_model(out / "model.pt")
    assert loaded.fingerprint == first["fingerprint"]
    codec = get_codec("gan-inversion" if kind == "gan" else "vaegan", model=out / "model.pt",
                      **({"steps": 2} if kind == "gan" else {}))
    image = Image.fromarray(np.ascontiguousarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3),
                                                                                  dtype=np.uint8)))
    assert codec.decode(codec.encode(image)).size == image.size

    # resume on the GPU for 3 more steps (of the last phase, for the GAN): it continues from the checkpoint
    more = dict(tiny, **({"encoder_steps": tiny["encoder_steps"] + 3} if kind == "gan" else {"steps": tiny["steps"] + 3}))
    second = train(kind, data_dir=None, out_dir=out, overrides=more, resume=True, dataset=AstronautCrops(32),
                   val_dataset=AstronautCrops(32, count=8, seed=1), progress=False)
    assert second["resumed_from_step"] == first["step"]
    assert second["step"] == first["step"] + 3
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, second["step"] + 1))
