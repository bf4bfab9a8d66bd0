"""The inference weights file ``model.pt``: what a codec needs to rebuild a trained model, and nothing else.

Layout (a plain dict, so ``torch.load(weights_only=True)`` reads it without running any pickled code)::

    {"format": 1,
     "kind": "gan" | "vaegan",
     "config": {...plain python types...},
     "state_dict": {component name: state dict},
     "metadata": {...plain python types: preset, steps, ...}}

gan:    config = {"generator": {latent_dim, tile, width}, "encoder": {latent_dim, tile, width},
                  "latent_dim", "tile"}; state_dict = {"generator": EMA generator, "encoder": inversion encoder}
vaegan: config = {"model": {max_channels, channel_set, width, downsample, upsample, entropy_model},
                  "quant_step": float, and by model.entropy_model (absent: "channel"):
                  channel:    "prior": {"type": "gaussian", "channels": int, "fitted": bool}
                  hyperprior: "hyperprior": {"latent_channels": int, "channels": int,
                                             "context": "checkerboard" (absent: none)}};
        state_dict = {"model": VAEGAN (encoder + decoder),
                      "prior": GaussianChannelPrior (channel) | "hyperprior": Hyperprior (hyperprior)}

A model file sizes the modules built from it, so :func:`load_model` checks its config before building any:
every field against the bounds below (``CONFIG_BOUNDS``), then the modules are built on PyTorch's ``meta``
device (no memory) and their parameter shapes compared with the tensors the file holds. Only a config that
describes exactly the weights in the file is built for real, so loading never allocates more than the file
carries (a 20 kB file whose config says width 200000 is refused by name, not tried).
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
import math

from gencomp.models.gan import GENERATOR_NORMS, Generator, InversionEncoder
from gencomp.models.hyperprior import CONTEXTS, Hyperprior
from gencomp.models.prior import GaussianChannelPrior
from gencomp.models.vaegan import ENTROPY_MODELS, UPSAMPLE_MODES, VAEGAN

# (low, high) inclusive for integers; generous (the gpu preset's models are far inside), the shape check does the rest
CONFIG_BOUNDS = {
    "latent_dim": (1, 65536),
    "tile": (8, 1024),
    "width": (1, 4096),
    "max_channels": (1, 4096),
    "downsample": (2, 256),
    "channel_set_len": (1, 64),
    "hyper_channels": (1, 4096),
}

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
    prior: GaussianChannelPrior | None = None  # vaegan with entropy_model "channel"
    hyperprior: Hyperprior | None = None  # vaegan with entropy_model "hyperprior", eval mode

    @property
    def entropy_model(self) -> str:
        """vaegan: how its latent is coded, "channel" or "hyperprior" (files older than the option: "channel")."""
        return self.config["model"].get("entropy_model", "channel")

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


def save_vaegan(path: str | os.PathLike, *, model: VAEGAN, prior: GaussianChannelPrior | None, quant_step: float,
                prior_fitted: bool, metadata: dict[str, Any] | None = None,
                hyperprior: Hyperprior | None = None) -> str:
    """Save the VAE-GAN (no discriminator) and its entropy model: the per-channel ``prior`` or, for a model with
    ``entropy_model="hyperprior"``, the ``hyperprior``. Returns the fingerprint."""
    config: dict[str, Any] = {"model": model.config, "quant_step": float(quant_step)}
    if model.entropy_model == "hyperprior":
        if hyperprior is None:
            raise ValueError("a model with entropy_model='hyperprior' needs its hyperprior to be saved")
        config["hyperprior"] = hyperprior.config
        states = {"model": _cpu_state(model), "hyperprior": _cpu_state(hyperprior)}
    else:
        if prior is None:
            raise ValueError("a model with entropy_model='channel' needs its prior to be saved")
        config["prior"] = {**prior.config, "fitted": bool(prior_fitted)}
        states = {"model": _cpu_state(model), "prior": _cpu_state(prior)}
    return save_model(path, kind="vaegan", config=config, state_dict=states, metadata=metadata)


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
    kind, config, states = payload["kind"], payload["config"], payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(states, dict):
        raise ModelFileError(f"{path}: model file has no config or state_dict mapping")
    try:
        _check_config(kind, config)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid model config ({exc})") from None
    try:
        _check_shapes(kind, config, states)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: model file does not match its config ({exc})") from None
    except ValueError as exc:
        raise ModelFileError(f"{path}: invalid model config ({exc})") from None
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
            if loaded.entropy_model == "hyperprior":
                loaded.hyperprior = _restore(Hyperprior(**config["hyperprior"]), states["hyperprior"], map_location)
            else:
                loaded.prior = _restore(GaussianChannelPrior(config["prior"]["channels"]), states["prior"],
                                        map_location)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: model file does not match its config ({exc})") from exc
    return loaded


def _int_in(config: dict, key: str, where: str, bounds: str | None = None) -> int:
    value = config[key]
    low, high = CONFIG_BOUNDS[bounds or key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{where}.{key} must be an integer in {low}..{high}, got {value!r}")
    return value


def _power_of_two(value: int, where: str) -> None:
    if value & (value - 1):
        raise ValueError(f"{where} must be a power of two, got {value}")


def _check_config(kind: str, config: dict[str, Any]) -> None:
    """Every field that sizes a module, within CONFIG_BOUNDS; raises ValueError/KeyError/TypeError naming it."""
    if kind == "gan":
        gen, enc = config["generator"], config["encoder"]
        if not isinstance(gen, dict) or not isinstance(enc, dict):
            raise TypeError("generator and encoder configs must be mappings")
        for where, part in (("generator", gen), ("encoder", enc)):
            _int_in(part, "latent_dim", where)
            _power_of_two(_int_in(part, "tile", where), f"{where}.tile")
            _int_in(part, "width", where)
        if gen.get("norm", "pixel") not in GENERATOR_NORMS:
            raise ValueError(f"generator.norm must be one of {GENERATOR_NORMS}, got {gen.get('norm')!r}")
        if (gen["latent_dim"], gen["tile"]) != (enc["latent_dim"], enc["tile"]):
            raise ValueError("generator and encoder disagree on latent_dim or tile")
        return
    model = config["model"]
    if not isinstance(model, dict):
        raise TypeError("model config must be a mapping")
    max_channels = _int_in(model, "max_channels", "model")
    _int_in(model, "width", "model")
    _power_of_two(_int_in(model, "downsample", "model"), "model.downsample")
    channel_set = model["channel_set"]
    low, high = CONFIG_BOUNDS["channel_set_len"]
    if not isinstance(channel_set, (list, tuple)) or not low <= len(channel_set) <= high or not all(
            isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= max_channels for c in channel_set):
        raise ValueError(f"model.channel_set must be {low}..{high} integers in 1..{max_channels}, got {channel_set!r}")
    if model.get("upsample", "nearest") not in UPSAMPLE_MODES:
        raise ValueError(f"model.upsample must be one of {UPSAMPLE_MODES}, got {model.get('upsample')!r}")
    entropy_model = model.get("entropy_model", "channel")
    if entropy_model not in ENTROPY_MODELS:
        raise ValueError(f"model.entropy_model must be one of {ENTROPY_MODELS}, got {entropy_model!r}")
    if entropy_model == "hyperprior":
        hyper = config["hyperprior"]
        if not isinstance(hyper, dict):
            raise TypeError("hyperprior config must be a mapping")
        _int_in(hyper, "channels", "hyperprior", "hyper_channels")
        if hyper.get("context", "none") not in CONTEXTS:
            raise ValueError(f"hyperprior.context must be one of {CONTEXTS}, got {hyper.get('context')!r}")
        if hyper.get("latent_channels") != max_channels:
            raise ValueError(f"hyperprior.latent_channels must equal model.max_channels ({max_channels}), "
                             f"got {hyper.get('latent_channels')!r}")
    else:
        prior = config["prior"]
        if not isinstance(prior, dict):
            raise TypeError("prior config must be a mapping")
        if prior.get("channels") != max_channels:
            raise ValueError(
                f"prior.channels must equal model.max_channels ({max_channels}), got {prior.get('channels')!r}")
    step = config["quant_step"]
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not (math.isfinite(step) and step > 0):
        raise ValueError(f"quant_step must be a positive number, got {step!r}")


def _meta_modules(kind: str, config: dict[str, Any]) -> dict[str, nn.Module]:
    with torch.device("meta"):
        if kind == "gan":
            return {"generator": Generator(**config["generator"]), "encoder": InversionEncoder(**config["encoder"])}
        model_cfg = {**config["model"], "channel_set": tuple(config["model"]["channel_set"])}
        if model_cfg.get("entropy_model", "channel") == "hyperprior":
            return {"model": VAEGAN(**model_cfg), "hyperprior": Hyperprior(**config["hyperprior"])}
        return {"model": VAEGAN(**model_cfg), "prior": GaussianChannelPrior(config["prior"]["channels"])}


def _check_shapes(kind: str, config: dict[str, Any], states: dict[str, Any]) -> None:
    """Build the modules on the meta device (no memory) and compare every tensor's shape with the file's."""
    for name, module in _meta_modules(kind, config).items():
        state = states[name]
        if not isinstance(state, dict):
            raise TypeError(f"state_dict[{name!r}] is not a mapping")
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        stored = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
        if expected.keys() != stored.keys():
            missing, extra = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
            raise RuntimeError(f"{name}: missing tensors {missing[:3]}, unexpected {extra[:3]}")
        for key, shape in expected.items():
            if stored[key] != shape:
                raise RuntimeError(f"{name}.{key} has shape {stored[key]}, the config needs {shape}")


def _restore(module: nn.Module, state: dict[str, torch.Tensor], device) -> nn.Module:
    module.load_state_dict(state)
    return module.to(device).eval().requires_grad_(False)
