"""What a model kind brings to the one training loop (:func:`gencomp.train.loop.train`): a recipe.

A recipe builds its modules and optimisers (``models`` / ``optimizers``: the names are the checkpoint's keys),
takes one training step, writes the inference model file, and validates that file through the kind's real codec.
Everything else -- runtime, resume, data, logging, checkpoints, time limits, the summary -- is the loop's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from gencomp import metrics
from gencomp.codecs.base import Codec
from gencomp.models.store import LoadedModel
from gencomp.train.runtime import Runtime


class Recipe:
    kind: ClassVar[str]
    crop: int  # side of the square training crops
    total_steps: int
    models: dict[str, nn.Module]  # everything the checkpoint keeps, by name; weights_sha256 covers them
    optimizers: dict[str, torch.optim.Optimizer]

    def __init__(self, cfg: dict[str, Any], rt: Runtime):
        self.cfg, self.rt = cfg, rt

    def distribute(self) -> None:
        """Wrap the modules the step runs (DDP, torch.compile); called once any checkpoint is loaded."""

    def init_pairs(self, model: LoadedModel) -> list[tuple[str, nn.Module, nn.Module]]:
        """(name, module of this run, module of the model file ``model``) whose weights ``init_from`` copies."""
        raise NotImplementedError

    def step(self, step: int, batch: torch.Tensor) -> tuple[str, dict[str, float]]:
        """One optimisation step on ``batch`` (N, 3, crop, crop) in [0, 1]; returns (phase, losses)."""
        raise NotImplementedError

    def finish(self, train_ds) -> None:
        """After the last step, on every rank (collectives allowed), before the model file is written."""

    def summary(self) -> dict[str, Any]:
        """Kind-specific fields of train_summary.json."""
        return {}

    def export(self, path: Path, metadata: dict[str, Any]) -> str:
        """Write the inference model file (gencomp.models.store); returns its fingerprint."""
        raise NotImplementedError

    def validate(self, model: LoadedModel, val_batches: list[torch.Tensor], *, final: bool):
        """(metrics, sample grid image or None) of the model file ``model`` on the validation batches."""
        raise NotImplementedError


def lr_factor(step: int, total: int, cfg: dict[str, Any]) -> float:
    """Linear warmup, then cosine decay to ``lr_min_factor`` (or constant): a pure function of the step."""
    warm = cfg["warmup_steps"]
    if warm and step <= warm:
        return step / warm
    if cfg["lr_decay"] == "none" or total <= warm:
        return 1.0
    progress = min(1.0, (step - warm) / max(1, total - warm))
    floor = cfg["lr_min_factor"]
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(opt: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    for group in opt.param_groups:
        group["lr"] = base_lr * factor


def clip(module: nn.Module, max_norm: float) -> float:
    return float(torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm))


def to_image(x: torch.Tensor) -> Image.Image:
    """(3, H, W) floats in [0, 1] -> an 8-bit RGB image, what a codec takes."""
    pixels = (x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def from_image(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


def measure(codec: Codec, batches: list[torch.Tensor], *, shown: int = 8,
            payload_bits: Callable[[bytes], float] | None = None) -> tuple[dict[str, float], torch.Tensor]:
    """Compress every image of ``batches`` to a file with ``codec`` and decode it: mean PSNR and SSIM
    (:mod:`gencomp.metrics`) and ``file_bpp``, bits per pixel of the whole files; with ``payload_bits`` (file
    bytes -> bits) also ``payload_bpp``. Returns them with the first ``shown`` reconstructions."""
    psnrs, ssims, file_bits, payload, pixels, decoded_first = [], [], 0.0, 0.0, 0, []
    for b, batch in enumerate(batches):
        for i, x in enumerate(batch):
            original = to_image(x)
            data = codec.encode(original)
            decoded = codec.decode(data)
            psnrs.append(metrics.psnr(original, decoded))
            ssims.append(metrics.ssim(original, decoded))
            file_bits += metrics.bpp(len(data), original.width, original.height) * original.width * original.height
            payload += payload_bits(data) if payload_bits else 0.0
            pixels += original.width * original.height
            if b == 0 and i < shown:
                decoded_first.append(from_image(decoded))
    scores = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "file_bpp": file_bits / pixels}
    if payload_bits:
        scores["payload_bpp"] = payload / pixels
    return scores, torch.stack(decoded_first)
