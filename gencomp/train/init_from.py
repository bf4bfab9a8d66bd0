"""Start a training run from a model file's weights (``init_from``), so training accumulates across runs.

A checkpoint resumes *one* run (same settings, optimiser state, data position). ``init_from`` is for the other
case: a new run -- another preset, another corpus, another machine, a wider or changed architecture -- that
should start from weights already trained rather than from random ones. It reads an inference model file
(``model.pt`` of an earlier run, or a zoo model by name, e.g. ``vaegan-default``; see ``gencomp models``) and
copies every tensor whose name and shape match into the new run's modules; the rest keep their fresh initialisation and are listed
in the run's summary, so a changed architecture reuses what still fits. Optimisers, the step and the
learning-rate schedule start afresh. A file of the other model kind is refused, and so is one of which less than
``MIN_SHARE`` of the run's weights fit (a few biases that happen to match are a mistake, not a start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from gencomp.models import zoo
from gencomp.models.store import load_model


MIN_SHARE = 0.1  # of the run's tensor elements that must come from the file


class InitFromError(ValueError):
    """``init_from`` names no usable model file for this run."""


def shipped_names() -> list[str]:
    """The zoo models installed in this package (``gencomp models``)."""
    return zoo.installed_names()


def resolve_init_path(value: str, kind: str | None = None) -> Path:
    """A zoo model's name or a path to a model file, through the zoo's one resolver; a zoo model of another
    ``kind`` is refused before any file is read."""
    try:
        return zoo.resolve_model(value, kind=kind, what="init_from")
    except zoo.ModelNotFound as exc:
        raise InitFromError(str(exc)) from None


def architecture(value: str, kind: str) -> dict[str, Any]:
    """The training settings that give a run the shape of the model file ``value`` (``architecture: init``):
    its widths, latent channels, decoder and entropy model, so its weights all fit."""
    loaded = load_model(resolve_init_path(value, kind))
    if loaded.kind != kind:
        raise InitFromError(f"init_from {value!r} is a {loaded.kind!r} model; this run trains a {kind!r} model")
    config = loaded.config
    if kind == "vaegan":
        model = config["model"]
        shape = {key: model[key] for key in ("max_channels", "channel_set", "width", "downsample", "upsample")}
        shape["entropy_model"] = model.get("entropy_model", "channel")
        if "hyperprior" in config:
            shape["hyper_channels"] = config["hyperprior"]["channels"]
            shape["hyper_context"] = config["hyperprior"].get("context", "none")
        return shape
    generator, encoder = config["generator"], config.get("encoder") or {}
    shape = {"latent_dim": generator["latent_dim"], "tile": generator["tile"], "g_width": generator["width"],
             "g_norm": generator.get("norm", "batch")}
    if "width" in encoder:
        shape["e_width"] = encoder["width"]
    return shape


def copy_matching(target: nn.Module, source: nn.Module) -> tuple[dict[str, int], dict[str, int]]:
    """Copy ``source``'s tensors into ``target`` where name and shape match: (copied, left as initialised),
    each a {tensor name: element count}."""
    source_state = source.state_dict()
    copied, kept = {}, {}
    with torch.no_grad():
        for name, tensor in target.state_dict().items():
            other = source_state.get(name)
            if other is not None and other.shape == tensor.shape:
                tensor.copy_(other.to(dtype=tensor.dtype, device=tensor.device))
                copied[name] = tensor.numel()
            else:
                kept[name] = tensor.numel()
    return copied, kept


def initialise(recipe, value: str) -> dict[str, Any]:
    """Copy the weights of the model file ``value`` into ``recipe``'s modules; returns what was done, for the
    run's summary."""
    path = resolve_init_path(value, recipe.kind)
    loaded = load_model(path)
    if loaded.kind != recipe.kind:
        raise InitFromError(f"init_from {value!r} is a {loaded.kind!r} model; this run trains a {recipe.kind!r} model")
    copied, elements_copied, elements, kept = 0, 0, 0, {}
    for target_name, target, source in recipe.init_pairs(loaded):
        done, left = copy_matching(target, source)
        copied += len(done)
        elements_copied += sum(done.values())
        elements += sum(done.values()) + sum(left.values())
        if left:
            kept[target_name] = sorted(left)
    share = elements_copied / max(elements, 1)
    if share < MIN_SHARE:
        raise InitFromError(f"init_from {value!r}: only {share:.1%} of this run's weights fit the tensors of {path} "
                            "(the architectures differ); start from random weights or from a matching model")
    return {"path": str(path), "fingerprint": loaded.fingerprint, "tensors_copied": copied,
            "share_of_weights": round(share, 4), "tensors_initialised_fresh": kept}
