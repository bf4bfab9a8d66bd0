"""The inference weights file ``model.pt``: what a codec needs to rebuild a trained model, and nothing else.

Layout (a plain dict, so ``torch.load(weights_only=True)`` reads it without running any pickled code)::

    {"format": 1,
     "kind": "gan" | "vaegan",
     "config": {...plain python types...},
     "state_dict": {component name: state dict},
     "metadata": {...plain python types: preset, steps, ...}}

gan:    config = {"generator": {latent_dim, tile, width}, "encoder": {latent_dim, tile, width},
                  "latent_dim", "tile"}; state_dict = {"generator": EMA generator, "encoder": inversion encoder}
vaegan: config = {"model": {max_channels, channel_set, width, downsample}, "quant_step": float,
                  "prior": {"type": "gaussian", "channels": int, "fitted": bool}};
        state_dict = {"model": VAEGAN (encoder + decoder), "prior": GaussianChannelPrior}
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gencomp.atomic import write_bytes_atomic
from gencomp.models.gan import Generator, InversionEncoder
from gencomp.models.prior import GaussianChannelPrior
from gencomp.models.vaegan import VAEGAN

FORMAT_VERSION = 1
KINDS = ("gan", "vaegan")


class ModelFileError(ValueError):
    """A model file that is missing, unreadable or not in the expected layout; the message names the path."""


@dataclass
class LoadedModel:
    kind: str
    config: dict[str, Any]
    fingerprint: str  # first 16 hex chars of sha256(file bytes)
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    generator: Generator | None = None  # gan: the EMA generator, eval mode
    encoder: InversionEncoder | None = None  # gan: the inversion encoder, eval mode
    model: VAEGAN | None = None  # vaegan, eval mode
    prior: GaussianChannelPrior | None = None  # vaegan

    @property
    def quant_step(self) -> float:
        return float(self.config["quant_step"])


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def file_fingerprint(data: bytes) -> str:
    """The fingerprint of a model file: the first 16 hex digits of the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()[:16]


def save_model(path: str | os.PathLike, *, kind: str, config: dict[str, Any],
               state_dict: dict[str, dict[str, torch.Tensor]], metadata: dict[str, Any] | None = None) -> str:
    """Write a model file atomically; returns its fingerprint (16 hex chars)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    payload = {"format": FORMAT_VERSION, "kind": kind, "config": config, "state_dict": state_dict,
               "metadata": dict(metadata or {})}
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    write_bytes_atomic(Path(path), data)
    return file_fingerprint(data)


def save_gan(path: str | os.PathLike, *, generator: Generator, encoder: InversionEncoder,
             metadata: dict[str, Any] | None = None) -> str:
    """Save the (EMA) generator and the inversion encoder. Returns the fingerprint."""
    config = {"generator": generator.config, "encoder": encoder.config,
              "latent_dim": generator.latent_dim, "tile": generator.tile}
    return save_model(path, kind="gan", config=config,
                      state_dict={"generator": _cpu_state(generator), "encoder": _cpu_state(encoder)},
                      metadata=metadata)


def save_vaegan(path: str | os.PathLike, *, model: VAEGAN, prior: GaussianChannelPrior, quant_step: float,
                prior_fitted: bool, metadata: dict[str, Any] | None = None) -> str:
    """Save the VAE-GAN (no discriminator) and its latent prior. Returns the fingerprint."""
    config = {"model": model.config, "quant_step": float(quant_step),
              "prior": {**prior.config, "fitted": bool(prior_fitted)}}
    return save_model(path, kind="vaegan", config=config,
                      state_dict={"model": _cpu_state(model), "prior": _cpu_state(prior)}, metadata=metadata)


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Read a model file written by :func:`save_model`; models come back in eval mode on ``map_location``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found (train a model first)") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read model file ({exc})") from exc
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION or payload.get("kind") not in KINDS:
        raise ModelFileError(f"{path}: not a gencomp model file of format {FORMAT_VERSION}")
    kind, config, states = payload["kind"], payload["config"], payload["state_dict"]
    loaded = LoadedModel(kind=kind, config=config, fingerprint=file_fingerprint(data), path=path,
                         metadata=payload.get("metadata", {}))
    try:
        if kind == "gan":
            loaded.generator = _restore(Generator(**config["generator"]), states["generator"], map_location)
            loaded.encoder = _restore(InversionEncoder(**config["encoder"]), states["encoder"], map_location)
        else:
            model_cfg = dict(config["model"])
            model_cfg["channel_set"] = tuple(model_cfg["channel_set"])
            loaded.model = _restore(VAEGAN(**model_cfg), states["model"], map_location)
            loaded.prior = _restore(GaussianChannelPrior(config["prior"]["channels"]), states["prior"], map_location)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: model file does not match its config ({exc})") from exc
    return loaded


def _restore(module: nn.Module, state: dict[str, torch.Tensor], device) -> nn.Module:
    module.load_state_dict(state)
    return module.to(device).eval().requires_grad_(False)
