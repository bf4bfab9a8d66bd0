"""The one training loop, for both model kinds, read top to bottom like nanoGPT's train.py.

``train(kind, data_dir=..., out_dir=...)`` trains the GAN (then its inversion encoder) or the VAE-GAN and writes
to ``out_dir``: ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end), ``model.pt`` (inference
weights, :mod:`gencomp.models.store`), ``train_summary.json``, ``metrics.jsonl`` / ``val.jsonl`` and ``dvclive/``.
What differs between the kinds -- modules, one step, the model file, validation through the kind's codec -- is a
recipe (:mod:`gencomp.train.gan`, :mod:`gencomp.train.vaegan`); everything else is here, once.

Devices and processes: CUDA when available (bf16 autocast, channels_last, optional torch.compile), else CPU.
Under ``torchrun`` it runs DDP (:mod:`gencomp.train.runtime`): every rank builds identical initial weights from
``seed`` and draws its own noise from ``seed + rank``; the loader shards the data by rank. Only rank 0 writes.

Resuming (``resume=True``): weights, optimisers, step and the RNG states of every rank come back from the
checkpoint. For the data, each rank re-creates its dataset iterator for the checkpoint's epoch (the loader is
deterministic given seed, epoch and rank) and discards the batches that epoch had already delivered; so on CPU
a resumed run reproduces the uninterrupted run's losses exactly. The learning rate is a pure function of the
step, so no scheduler state is needed. A checkpoint from a different world size resumes weights and step but
reseeds the noise (exactness then is impossible by construction). Validation runs with the RNG forked, so
validating more or less often never changes the training itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gencomp.atomic import write_bytes_atomic
from gencomp.models.store import load_model
from gencomp.train.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from gencomp.train.data import BatchStream, first_batches, make_datasets
from gencomp.train.gan import GANRecipe
from gencomp.train.init_from import architecture, initialise
from gencomp.train.logging import TrainLogger
from gencomp.train.presets import resolve_preset
from gencomp.train.recipe import Recipe
from gencomp.train.runtime import Runtime, seed_everything
from gencomp.train.vaegan import VAEGANRecipe

__all__ = ["BatchStream", "RECIPES", "WARMUP_STEPS", "train"]

RECIPES: dict[str, type[Recipe]] = {"gan": GANRecipe, "vaegan": VAEGANRecipe}
SUMMARY_NAME = "train_summary.json"
MODEL_NAME = "model.pt"
# Settings that may change between a checkpoint and its resumption (schedules, logging, workers, arithmetic: a
# run started in fp32 on one machine may go on in bf16 on the next); any other difference means the checkpoint
# belongs to a different experiment and resuming it would mix the two.
RESUMABLE_CHANGES = {"steps", "encoder_steps", "checkpoint_every", "log_every", "val_every", "val_batches",
                     "num_workers", "threads", "compile", "max_time_s", "init_from", "architecture", "amp",
                     "channels_last"}
# Settings added after checkpoints were first written, with the value that reproduces how older code behaved:
# an older checkpoint lacks them, and must still resume when they have that value.
ADDED_SETTINGS = {"epochs_per_pass": 1, "init_from": "", "architecture": "preset"}
ADDED_KIND_SETTINGS = {  # the same, for one kind
    "vaegan": {"entropy_model": "channel", "hyper_channels": 64, "hyper_context": "none", "trainable": "all",
               "channel_weights": []},
    "gan": {"recon_weight": 0.0, "recon_latent_weight": 0.1},
}
WARMUP_STEPS = 20  # steps left out of steady_images_per_s (compilation and autotuning happen in them)


@dataclass
class Tally:
    """Where the run stands: what the checkpoint records, and what the summary's throughput is made of."""

    step: int = 0
    samples_consumed: int = 0
    steps_run: int = 0  # in this invocation
    t_start: float = 0.0
    t_warm: float | None = None
    elapsed: float = 0.0


def train(kind: str, *, data_dir: str | os.PathLike | None, out_dir: str | os.PathLike, preset: str = "demo",
          overrides: dict[str, Any] | None = None, resume: bool = False, dataset=None, val_dataset=None,
          progress: bool = True) -> dict[str, Any]:
    """Train ``kind`` ("gan" or "vaegan") with ``preset`` + ``overrides``; returns the summary it also writes.

    ``dataset`` / ``val_dataset`` replace the shard loader (tests inject small synthetic datasets); they must be
    iterables of float32 (3, crop, crop) tensors in [0, 1], optionally with ``set_epoch(epoch)``.
    """
    cfg = resolve_preset(kind, preset, overrides)
    if cfg["architecture"] == "init" and cfg["init_from"]:
        # the model file's shape beneath the settings given explicitly, validated as any override is
        cfg = resolve_preset(kind, preset, {**architecture(cfg["init_from"], kind), **(overrides or {})})
    out_dir = Path(out_dir)
    if dataset is None and data_dir is None:
        raise ValueError("train needs data_dir (a shards folder) or an injected dataset")
    state = _resume_state(cfg, out_dir, resume, kind)
    with Runtime(cfg) as rt:
        if rt.bf16_emulated:
            warnings.warn("amp=bf16 on a CPU without bf16 instructions (AMX or AVX512-BF16): emulated, slower than "
                          "fp32; use amp=auto here", RuntimeWarning, stacklevel=2)
        # models and optimisers: identical initial weights on every rank, then each rank's own noise
        seed_everything(cfg["seed"])
        recipe = RECIPES[kind](cfg, rt)
        seed_everything(cfg["seed"] + 1 + rt.rank)
        tally, epoch, batches, initialised_from = Tally(), 0, 0, None
        if state is None and cfg["init_from"]:
            initialised_from = initialise(recipe, cfg["init_from"])
        if state is not None:
            _load_weights(recipe, state, out_dir)
            tally.step, tally.samples_consumed = state["step"], state["samples_consumed"]
            epoch, batches = rt.restore_position(state, cfg)
        recipe.distribute()

        # data and logs
        train_ds, val_ds, val_note = make_datasets(cfg, data_dir, rt, recipe.crop, dataset, val_dataset)
        stream = BatchStream(train_ds, batch_size=cfg["batch_size"], num_workers=cfg["num_workers"],
                             seed=cfg["seed"], rank=rt.rank, epoch=epoch, batches=batches, pin_memory=rt.cuda,
                             epochs_per_pass=cfg["epochs_per_pass"])
        val_batches = first_batches(val_ds, cfg["batch_size"], cfg["val_batches"]) if rt.is_main else []
        log = TrainLogger(out_dir, enabled=rt.is_main, resume_step=tally.step if state is not None else None,
                          total_steps=recipe.total_steps, log_every=cfg["log_every"], progress=progress, params=cfg)

        # the loop
        losses: dict[str, float] = {}
        tally.t_start = time.perf_counter()
        while tally.step < recipe.total_steps:
            tally.step += 1
            batch = rt.to_device(stream.next())
            phase, losses = recipe.step(tally.step, batch)
            tally.samples_consumed += batch.shape[0] * rt.world_size
            tally.steps_run += 1
            if tally.steps_run == WARMUP_STEPS:
                tally.t_warm = time.perf_counter()
            _check_finite(tally.step, losses, out_dir)
            log.log_step(tally.step, stream.epoch, phase, losses)
            if tally.step % cfg["val_every"] == 0 and rt.is_main:
                _validate(recipe, rt, log, tally, preset, val_batches, final=False)
            out_of_time = rt.out_of_time(tally.t_start, cfg["max_time_s"])
            if tally.step % cfg["checkpoint_every"] == 0 or tally.step == recipe.total_steps or out_of_time:
                _checkpoint(out_dir, rt, recipe, stream, tally, preset)
            if out_of_time:
                break  # checkpointed above; the run ends as a finished one would (model, validation, summary)
        tally.elapsed = time.perf_counter() - tally.t_start

        # the end: the model file, its validation, the summary
        recipe.finish(train_ds)
        summary: dict[str, Any] = {
            "kind": kind, "preset": preset, "step": tally.step, "total_steps": recipe.total_steps,
            "world_size": rt.world_size, "device": str(rt.device), **recipe.summary(),
            "resumed_from_step": state["step"] if state is not None else None,
            "initialised_from": initialised_from,
            "stopped_early": tally.step < recipe.total_steps,
        }
        if rt.is_main:
            model_path = out_dir / MODEL_NAME
            fingerprint = recipe.export(model_path, _model_metadata(preset, tally))
            metrics = _validate(recipe, rt, log, tally, preset, val_batches, final=True, model_path=model_path)
            summary.update(val=metrics, model_path=str(model_path), fingerprint=fingerprint)
            if val_note:
                summary["val_note"] = val_note
        log.close()
        return _write_summary(out_dir, rt, summary, cfg, recipe, tally, losses)


def _resume_state(cfg: dict[str, Any], out_dir: Path, resume: bool, kind: str) -> dict[str, Any] | None:
    """The checkpoint to continue from, checked to belong to this experiment; None for a fresh run."""
    if not resume:
        return None
    path = out_dir / CHECKPOINT_NAME
    if not path.exists():
        return None  # nothing to resume: a fresh run (documented: resume means "continue if possible")
    state = load_checkpoint(path)
    if state.get("kind") != kind:
        raise ValueError(f"{path}: checkpoint is for {state.get('kind')!r}, not {kind!r}")
    old = {**ADDED_SETTINGS, **ADDED_KIND_SETTINGS.get(kind, {}), **state["config"]}
    changed = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {cfg.get(k)!r}" for k in changed)
        raise ValueError(f"{path}: cannot resume, settings differ from the checkpoint's ({detail}); "
                         "use another out_dir or the checkpoint's preset")
    return state


def _load_weights(recipe: Recipe, state: dict[str, Any], out_dir: Path) -> None:
    for group, owned in (("models", recipe.models), ("optimizers", recipe.optimizers)):
        missing = sorted(set(owned) - set(state.get(group, {})))
        if missing:
            raise CheckpointError(f"{out_dir / CHECKPOINT_NAME}: the checkpoint has no {group} {missing}; it was "
                                  f"written by an incompatible version of gencomp (start afresh in another out_dir)")
        for name, thing in owned.items():
            thing.load_state_dict(state[group][name])


def _checkpoint(out_dir: Path, rt: Runtime, recipe: Recipe, stream: BatchStream, tally: Tally, preset: str) -> None:
    ranks = rt.gather_positions(stream.epoch, stream.batches)  # a collective: every rank takes part
    if rt.is_main:
        save_checkpoint(out_dir / CHECKPOINT_NAME, {
            "kind": recipe.kind, "preset": preset, "config": recipe.cfg, "step": tally.step,
            "samples_consumed": tally.samples_consumed, "world_size": rt.world_size, "ranks": ranks,
            "models": {name: m.state_dict() for name, m in recipe.models.items()},
            "optimizers": {name: o.state_dict() for name, o in recipe.optimizers.items()},
            "scaler": None,  # bf16 autocast needs no loss scaling
        })


def _model_metadata(preset: str, tally: Tally) -> dict[str, Any]:
    return {"preset": preset, "steps": tally.step, "samples_consumed": tally.samples_consumed}


def _validate(recipe: Recipe, rt: Runtime, log: TrainLogger, tally: Tally, preset: str,
              val_batches: list[torch.Tensor], *, final: bool, model_path: Path | None = None) -> dict[str, float]:
    """Validate a model file through the recipe's codec (mid-run: a temporary one) and log the result."""
    with rt.fork_rng(), tempfile.TemporaryDirectory(prefix="gencomp-val-") as tmp:
        if model_path is None:
            model_path = Path(tmp) / MODEL_NAME
            recipe.export(model_path, _model_metadata(preset, tally))
        metrics, grid = recipe.validate(load_model(model_path, map_location=rt.device), val_batches, final=final)
    log.log_val(tally.step, metrics, grid)
    return metrics


def _check_finite(step: int, losses: dict[str, float], out_dir: Path) -> None:
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"training diverged at step {step}: {bad} not finite; the last good checkpoint "
                                 f"is {out_dir / CHECKPOINT_NAME} (lower the learning rate and resume)")


def weights_digest(modules: dict[str, nn.Module]) -> str:
    """sha256 over every parameter (in name order): equal digests mean equal weights (the DDP test)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        for pname, p in sorted(modules[name].named_parameters()):
            h.update(f"{name}.{pname}".encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _write_summary(out_dir: Path, rt: Runtime, summary: dict[str, Any], cfg: dict[str, Any], recipe: Recipe,
                   tally: Tally, losses: dict[str, float]) -> dict[str, Any]:
    """Complete and write train_summary.json. ``train_images_per_s`` counts the whole run;
    ``steady_images_per_s`` only the steps after the first WARMUP_STEPS (compilation, cuDNN autotuning and the
    loader's first batches happen in those), so short GPU runs report the rate a long one would have. None for
    runs of WARMUP_STEPS steps or fewer."""
    images_per_step = cfg["batch_size"] * rt.world_size
    warm_s = None if tally.t_warm is None else tally.t_start + tally.elapsed - tally.t_warm
    summary.update(
        final_losses=losses, elapsed_s=round(tally.elapsed, 3), steps_run=tally.steps_run,
        samples_consumed=tally.samples_consumed,
        train_images_per_s=round(tally.steps_run * images_per_step / max(tally.elapsed, 1e-9), 2),
        steady_images_per_s=None if warm_s is None or tally.steps_run <= WARMUP_STEPS else
        round((tally.steps_run - WARMUP_STEPS) * images_per_step / max(warm_s, 1e-9), 2),
        checkpoint_path=str(out_dir / CHECKPOINT_NAME), config=cfg, weights_sha256=weights_digest(recipe.models),
    )
    if rt.is_main:
        write_bytes_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2, default=str).encode())
    return summary
