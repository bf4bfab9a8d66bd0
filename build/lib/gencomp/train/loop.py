"""The one training loop, for both model kinds (read top to bottom, like nanoGPT's train.py).

``train(kind, data_dir=..., out_dir=...)`` trains the GAN (then its inversion encoder) or the VAE-GAN and writes
to ``out_dir``: ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end), ``model.pt`` (inference
weights, :mod:`gencomp.models.store`), ``train_summary.json``, ``metrics.jsonl`` / ``val.jsonl`` and ``dvclive/``.

Devices and processes: CUDA when available (bf16 autocast, channels_last, optional torch.compile), else CPU.
Under ``torchrun`` (env RANK / WORLD_SIZE / LOCAL_RANK) it runs DDP: gloo on CPU, nccl on GPU; every rank
builds identical initial weights from ``seed`` and draws its own noise from ``seed + rank``; the loader shards
the data by rank. Only rank 0 writes files.

Resuming (``resume=True``): weights, optimisers, step and the RNG states of every rank come back from the
checkpoint. For the data, each rank re-creates its dataset iterator for the checkpoint's epoch (the loader is
deterministic given seed, epoch and rank) and discards the batches that epoch had already delivered; so on CPU
a resumed run reproduces the uninterrupted run's losses exactly. The learning rate is a pure function of the
step, so no scheduler state is needed. A checkpoint from a different world size resumes weights and step but
reseeds the noise (exactness then is impossible by construction).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from gencomp.models.gan import (
    Discriminator,
    Generator,
    InversionEncoder,
    d_hinge_loss,
    ema_update,
    g_hinge_loss,
    inversion_losses,
)
from gencomp.models.prior import GaussianChannelPrior
from gencomp.atomic import write_bytes_atomic
from gencomp.models.store import save_gan, save_vaegan
from gencomp.models.vaegan import VAEGAN, PatchDiscriminator, kl_divergence
from gencomp.train.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from gencomp.train.logging import TrainLogger, image_grid
from gencomp.train.presets import resolve_preset

SUMMARY_NAME = "train_summary.json"
MODEL_NAME = "model.pt"
# Settings that may change between a checkpoint and its resumption (schedules, logging, workers); any other
# difference means the checkpoint belongs to a different experiment and resuming it would mix the two.
# Settings added after checkpoints were first written, with the value that reproduces how older code behaved:
# an older checkpoint lacks them, and must still resume when they have that value.
ADDED_SETTINGS = {"epochs_per_pass": 1}
RESUMABLE_CHANGES = {"steps", "encoder_steps", "checkpoint_every", "log_every", "val_every", "val_batches",
                     "num_workers", "threads", "compile", "max_time_s"}
WARMUP_STEPS = 20  # steps left out of steady_images_per_s (compilation and autotuning happen in them)
SAMPLE_SEED = 1234  # fixed latents / images for the sample grids, drawn from their own generator


# --------------------------------------------------------------------------------------------------------------
# processes, devices, data


class Runtime:
    """Where this process runs: rank, world size, device, autocast."""

    def __init__(self, cfg: dict[str, Any]):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.ddp = self.world_size > 1
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.cuda = self.device.type == "cuda"
        self.owns_process_group = False
        if self.ddp and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.cuda else "gloo")
            self.owns_process_group = True
        self.is_main = self.rank == 0
        self.threads_before = torch.get_num_threads()
        if not self.cuda and cfg["threads"] > 0:
            torch.set_num_threads(cfg["threads"])
        self.bf16 = self.cuda and cfg["amp"] == "auto"
        self.channels_last = self.cuda and cfg["channels_last"] == "auto"
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP-wrap for multi-process runs; identity otherwise."""
        if not self.ddp:
            return module
        return DDP(module, device_ids=[self.local_rank] if self.cuda else None)

    def all_reduce_mean_(self, tensors: Iterable[torch.Tensor]) -> None:
        if self.ddp:
            for t in tensors:
                dist.all_reduce(t)
                t.div_(self.world_size)

    def close(self) -> None:
        torch.set_num_threads(self.threads_before)
        if self.owns_process_group:
            dist.destroy_process_group()


class BatchStream:
    """Endless batches from an iterable dataset, pass after pass, that can restart mid-pass.

    A pass is one DataLoader iteration over ``epochs_per_pass`` epochs (the dataset's ``set_epochs``; 1 needs
    only ``set_epoch``): more than one keeps the workers running across epoch ends, which matters when epochs
    are short. ``epoch`` (the pass's first epoch) and ``batches`` (delivered in that pass) are the resume
    position. The DataLoader gets its own seeded torch.Generator so that creating an iterator never draws from
    the global RNG (which the checkpoint restores for the training noise).
    """

    def __init__(self, dataset, *, batch_size: int, num_workers: int, seed: int, rank: int, epoch: int = 0,
                 batches: int = 0, pin_memory: bool = False, epochs_per_pass: int = 1):
        if epochs_per_pass > 1 and not hasattr(dataset, "set_epochs"):
            raise ValueError(f"epochs_per_pass={epochs_per_pass} needs a dataset with set_epochs(first, count)")
        self.epochs_per_pass = epochs_per_pass
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.rank = rank
        self.epoch = epoch
        self.batches = batches
        self.pin_memory = pin_memory
        self._it = None

    def _open_epoch(self) -> None:
        if self.epochs_per_pass > 1:
            self.dataset.set_epochs(self.epoch, self.epochs_per_pass)
        elif hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank * 7919 + self.epoch)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            drop_last=True, generator=gen, pin_memory=self.pin_memory)
        self._it = iter(loader)
        for _ in range(self.batches):  # resume: skip what this epoch already delivered
            if next(self._it, None) is None:
                raise RuntimeError(f"resume: the pass from epoch {self.epoch} now holds fewer than {self.batches} batches; "
                                   "the dataset changed since the checkpoint")

    def next(self) -> torch.Tensor:
        empty_epochs = 0
        while True:
            if self._it is None:
                self._open_epoch()
            batch = next(self._it, None)
            if batch is not None:
                self.batches += 1
                return batch[0] if isinstance(batch, (list, tuple)) else batch
            empty_epochs = empty_epochs + 1 if self.batches == 0 else 0
            if empty_epochs >= 2:
                raise RuntimeError(f"the training data yields no full batch of {self.batch_size} crops")
            self.epoch += self.epochs_per_pass
            self.batches = 0
            self._it = None


def _first_batches(dataset, batch_size: int, count: int) -> list[torch.Tensor]:
    if dataset is None:
        return []
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=0):
        out.append(batch[0] if isinstance(batch, (list, tuple)) else batch)
        if len(out) >= count:
            break
    return out


def _make_datasets(cfg, data_dir, rt: Runtime, crop: int, dataset, val_dataset):
    """The shard loader unless the caller injected datasets; a missing val split only disables validation."""
    if dataset is not None:
        return dataset, val_dataset, None
    from gencomp.data.loader import ShardDataset  # lazy: the loader pulls in pyarrow

    train_ds = ShardDataset(data_dir, "train", crop=crop, train=True, seed=cfg["seed"],
                            downscale_to=cfg["downscale_to"], rank=rt.rank if rt.ddp else None,
                            world_size=rt.world_size if rt.ddp else None,
                            crops_per_image=cfg["crops_per_image"])
    if val_dataset is not None:
        return train_ds, val_dataset, None
    try:
        # only rank 0 validates, on the whole split (the loader would otherwise pick up the DDP rank)
        val_ds = ShardDataset(data_dir, "val", crop=crop, train=False, seed=cfg["seed"],
                              downscale_to=cfg["downscale_to"], rank=0, world_size=1)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return train_ds, None, f"no validation split ({exc})"
    return train_ds, val_ds, None


# --------------------------------------------------------------------------------------------------------------
# small helpers


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def weights_digest(modules: dict[str, nn.Module]) -> str:
    """sha256 over every parameter (in name order): equal digests mean equal weights (the DDP test)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        for pname, p in sorted(modules[name].named_parameters()):
            h.update(f"{name}.{pname}".encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def psnr_ssim_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean PSNR / SSIM over a batch, on 8-bit values like :mod:`gencomp.metrics` (peak 255, 11px window)."""
    a = (x.detach().float().clamp(0, 1) * 255).round().double().cpu()
    b = (y.detach().float().clamp(0, 1) * 255).round().double().cpu()
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    psnr = (10 * torch.log10(255.0**2 / mse)).mean().item()
    win = _fspecial_gauss_1d(min(11, min(a.shape[-2:]) // 2 * 2 - 1), 1.5).repeat(3, 1, 1, 1).double()
    ssim_per_channel, _ = _ssim(a, b, data_range=255, win=win, size_average=False)
    return psnr, ssim_per_channel.mean().item()


def ms_ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - MS-SSIM on [0,1] images, differentiable, with as many scales as the crop holds (<= 5)."""
    weights = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333], device=x.device)
    scales = 1
    while scales < 5 and min(x.shape[-2:]) > 10 * 2**scales:
        scales += 1
    weights = weights[:scales] / weights[:scales].sum()
    win = _fspecial_gauss_1d(11, 1.5).repeat(3, 1, 1, 1).to(x.device, x.dtype)
    values = []
    for level in range(scales):
        ssim_pc, cs = _ssim(x, y, data_range=1.0, win=win, size_average=False)
        if level < scales - 1:
            values.append(torch.relu(cs))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    values.append(torch.relu(ssim_pc))
    msssim = torch.prod(torch.stack(values, 0) ** weights.view(-1, 1, 1), dim=0)
    return 1.0 - msssim.mean()


def _out_of_time(rt: Runtime, t_start: float, max_time_s: float) -> bool:
    """True once ``max_time_s`` (> 0) seconds of training have passed, on every rank at the same step."""
    if max_time_s <= 0:
        return False
    late = time.perf_counter() - t_start >= max_time_s
    if rt.ddp:  # every rank must stop at the same step, or the next collective would hang
        flag = torch.tensor([1.0 if late else 0.0], device=rt.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        late = bool(flag.item())
    return late


def _check_finite(step: int, losses: dict[str, float], out_dir: Path) -> None:
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"training diverged at step {step}: {bad} not finite; the last good checkpoint "
                                 f"is {out_dir / CHECKPOINT_NAME} (lower the learning rate and resume)")


def _resume_state(cfg, out_dir: Path, resume: bool, kind: str, preset: str) -> dict[str, Any] | None:
    if not resume:
        return None
    path = out_dir / CHECKPOINT_NAME
    if not path.exists():
        return None  # nothing to resume: a fresh run (documented: resume means "continue if possible")
    state = load_checkpoint(path)
    if state.get("kind") != kind:
        raise ValueError(f"{path}: checkpoint is for {state.get('kind')!r}, not {kind!r}")
    old = {**ADDED_SETTINGS, **state["config"]}
    changed = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {cfg.get(k)!r}" for k in changed)
        raise ValueError(f"{path}: cannot resume, settings differ from the checkpoint's ({detail}); "
                         "use another out_dir or the checkpoint's preset")
    return state


# --------------------------------------------------------------------------------------------------------------
# the entry point


def train(kind: str, *, data_dir: str | os.PathLike | None, out_dir: str | os.PathLike, preset: str = "demo",
          overrides: dict[str, Any] | None = None, resume: bool = False, dataset=None, val_dataset=None,
          progress: bool = True) -> dict[str, Any]:
    """Train ``kind`` ("gan" or "vaegan") with ``preset`` + ``overrides``; returns the summary it also writes.

    ``dataset`` / ``val_dataset`` replace the shard loader (tests inject small synthetic datasets); they must be
    iterables of float32 (3, crop, crop) tensors in [0, 1], optionally with ``set_epoch(epoch)``.
    """
    cfg = resolve_preset(kind, preset, overrides)
    out_dir = Path(out_dir)
    if dataset is None and data_dir is None:
        raise ValueError("train needs data_dir (a shards folder) or an injected dataset")
    rt = Runtime(cfg)
    try:
        if kind == "gan":
            return _train_gan(cfg, rt, preset, Path(data_dir) if data_dir else None, out_dir, resume, dataset,
                              val_dataset, progress)
        return _train_vaegan(cfg, rt, preset, Path(data_dir) if data_dir else None, out_dir, resume, dataset,
                             val_dataset, progress)
    finally:
        rt.close()


def _gather_positions(rt: Runtime, stream: BatchStream) -> list[dict[str, Any]]:
    """Every rank's RNG states and data position (rank order), for an exact multi-process resume."""
    mine = {"rng": capture_rng(), "epoch": stream.epoch, "batches": stream.batches}
    if not rt.ddp:
        return [mine]
    everyone: list[Any] = [None] * rt.world_size
    dist.all_gather_object(everyone, mine)
    return everyone


def _restore_position(rt: Runtime, state: dict[str, Any], cfg: dict[str, Any]) -> tuple[int, int]:
    ranks = state["ranks"]
    if len(ranks) == rt.world_size:
        restore_rng(ranks[rt.rank]["rng"])
        return ranks[rt.rank]["epoch"], ranks[rt.rank]["batches"]
    seed_everything(cfg["seed"] + 1 + rt.rank + 7919 * state["step"])
    # another world size: start the next pass with fresh noise
    return ranks[0]["epoch"] + cfg["epochs_per_pass"], 0


def _finish(out_dir: Path, rt: Runtime, summary: dict[str, Any], *, log, val_note, losses, elapsed: float,
            warm_s: float | None, steps_run: int, samples_consumed: int, cfg: dict[str, Any],
            modules: dict) -> dict[str, Any]:
    """The part of the end of a run both kinds share: close the logs, complete and write train_summary.json.

    ``train_images_per_s`` counts the whole run; ``steady_images_per_s`` only the steps after the first
    WARMUP_STEPS (compilation, cuDNN autotuning and the loader's first batches happen in those), so short GPU
    runs report the rate a long one would have. None for runs of WARMUP_STEPS steps or fewer."""
    if rt.is_main and val_note:
        summary["val_note"] = val_note
    log.close()
    summary.update(
        final_losses=losses, elapsed_s=round(elapsed, 3), steps_run=steps_run, samples_consumed=samples_consumed,
        train_images_per_s=round(steps_run * cfg["batch_size"] * rt.world_size / max(elapsed, 1e-9), 2),
        steady_images_per_s=None if warm_s is None or steps_run <= WARMUP_STEPS else
        round((steps_run - WARMUP_STEPS) * cfg["batch_size"] * rt.world_size / max(warm_s, 1e-9), 2),
        checkpoint_path=str(out_dir / CHECKPOINT_NAME), config=cfg, weights_sha256=weights_digest(modules),
    )
    if rt.is_main:
        write_bytes_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2, default=str).encode())
    return summary


# --------------------------------------------------------------------------------------------------------------
# GAN: `steps` adversarial steps, then `encoder_steps` inversion-encoder steps against the frozen EMA generator


def _train_gan(cfg, rt: Runtime, preset, data_dir, out_dir, resume, dataset, val_dataset, progress):
    total = cfg["steps"] + cfg["encoder_steps"]
    state = _resume_state(cfg, out_dir, resume, "gan", preset)

    seed_everything(cfg["seed"])  # identical initial weights on every rank
    G = Generator(cfg["latent_dim"], cfg["tile"], cfg["g_width"], norm=cfg["g_norm"]).to(rt.device)
    D = Discriminator(cfg["tile"], cfg["d_width"]).to(rt.device)
    E = InversionEncoder(cfg["latent_dim"], cfg["tile"], cfg["e_width"]).to(rt.device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    if rt.channels_last:
        for m in (G, D, E, G_ema):
            m.to(memory_format=torch.channels_last)
    betas = tuple(cfg["betas"])
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg["lr_g"], betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg["lr_d"], betas=betas)
    opt_e = torch.optim.Adam(E.parameters(), lr=cfg["lr_encoder"])

    step, epoch, batches, samples_consumed = 0, 0, 0, 0
    seed_everything(cfg["seed"] + 1 + rt.rank)  # per-rank noise
    if state is not None:
        for name, m in (("generator", G), ("discriminator", D), ("encoder", E), ("generator_ema", G_ema)):
            m.load_state_dict(state["models"][name])
        for name, o in (("generator", opt_g), ("discriminator", opt_d), ("encoder", opt_e)):
            o.load_state_dict(state["optimizers"][name])
        step, samples_consumed = state["step"], state["samples_consumed"]
        epoch, batches = _restore_position(rt, state, cfg)

    G_run, D_run, E_run = rt.wrap(G), rt.wrap(D), rt.wrap(E)
    if cfg["compile"]:
        G_run, D_run, E_run = torch.compile(G_run), torch.compile(D_run), torch.compile(E_run)

    train_ds, val_ds, val_note = _make_datasets(cfg, data_dir, rt, cfg["tile"], dataset, val_dataset)
    stream = BatchStream(train_ds, batch_size=cfg["batch_size"], num_workers=cfg["num_workers"],
                         seed=cfg["seed"], rank=rt.rank, epoch=epoch, batches=batches, pin_memory=rt.cuda,
                         epochs_per_pass=cfg["epochs_per_pass"])
    val_batches = _first_batches(val_ds, cfg["batch_size"], cfg["val_batches"]) if rt.is_main else []
    sample_z = torch.randn(32, cfg["latent_dim"], generator=torch.Generator().manual_seed(SAMPLE_SEED))
    log = TrainLogger(out_dir, enabled=rt.is_main, resume_step=step if state is not None else None,
                      total_steps=total, log_every=cfg["log_every"], progress=progress, params=cfg)

    def validate() -> tuple[dict[str, float], Any]:
        """Inversion quality G_ema(E(x)) on val tiles (meaningful once the encoder trains) + a sample grid."""
        E.eval()
        with torch.no_grad(), rt.autocast():
            samples = G_ema(sample_z.to(rt.device)).float()
            grid = [(samples[:16] + 1) / 2]
            # mode-collapse alarm: per-pixel std across 32 samples (about 0.5 for photos, ~0.02 when collapsed)
            metrics: dict[str, float] = {"sample_diversity": float(samples.std(0).mean())}
            if val_batches:
                psnrs, ssims = [], []
                for vb in val_batches:
                    x = rt.to_device(vb) * 2 - 1
                    rec = (G_ema(E(x)).float() + 1) / 2
                    p, s = psnr_ssim_batch((x + 1) / 2, rec)
                    psnrs.append(p)
                    ssims.append(s)
                metrics.update(inversion_psnr=float(np.mean(psnrs)), inversion_ssim=float(np.mean(ssims)))
                shown = val_batches[0][:8].to(rt.device)
                grid += [shown, (G_ema(E(shown * 2 - 1)).float() + 1) / 2]
        E.train()
        return metrics, image_grid(torch.cat([g[:8].float().cpu() for g in grid]), columns=8)

    t_start, t_warm, steps_run, losses = time.perf_counter(), None, 0, {}
    while step < total:
        step += 1
        real = rt.to_device(stream.next()) * 2 - 1
        n = real.shape[0]
        if step <= cfg["steps"]:
            phase = "gan"
            factor = lr_factor(step, cfg["steps"], cfg)
            set_lr(opt_g, cfg["lr_g"], factor)
            set_lr(opt_d, cfg["lr_d"], factor)
            z = torch.randn(n, cfg["latent_dim"], device=rt.device)
            # discriminator: one forward over real and fake together (one DDP forward per backward)
            with rt.autocast():
                fake = G_run(z)
                scores = D_run(torch.cat([real, fake.detach()])).float()
                loss_d = d_hinge_loss(scores[:n], scores[n:])
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            clip(D, cfg["grad_clip"])
            opt_d.step()
            # generator: through the bare discriminator, frozen, so no gradient is spent on (or synced for) D
            D.requires_grad_(False)
            with rt.autocast():
                loss_g = g_hinge_loss(D(fake).float())
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            D.requires_grad_(True)
            clip(G, cfg["grad_clip"])
            opt_g.step()
            ema_update(G_ema, G, cfg["ema_decay"])
            losses = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "lr": opt_g.param_groups[0]["lr"]}
        else:
            phase = "encoder"
            set_lr(opt_e, cfg["lr_encoder"], lr_factor(step - cfg["steps"], cfg["encoder_steps"], cfg))
            z = torch.randn(n, cfg["latent_dim"], device=rt.device)
            with rt.autocast():
                pixel, latent = inversion_losses(E_run, G_ema, real, z)
                loss_e = pixel + cfg["encoder_latent_weight"] * latent
            opt_e.zero_grad(set_to_none=True)
            loss_e.backward()
            clip(E, cfg["grad_clip"])
            opt_e.step()
            losses = {"loss_e": loss_e.item(), "pixel_mse": pixel.item(), "latent_mse": latent.item(),
                      "lr": opt_e.param_groups[0]["lr"]}
        samples_consumed += n * rt.world_size
        steps_run += 1
        if steps_run == WARMUP_STEPS:
            t_warm = time.perf_counter()
        _check_finite(step, losses, out_dir)
        log.log_step(step, stream.epoch, phase, losses)

        if step % cfg["val_every"] == 0 and rt.is_main:
            metrics, grid = validate()
            log.log_val(step, metrics, grid)
        out_of_time = _out_of_time(rt, t_start, cfg["max_time_s"])
        if step % cfg["checkpoint_every"] == 0 or step == total or out_of_time:
            ranks = _gather_positions(rt, stream)
            if rt.is_main:
                save_checkpoint(out_dir / CHECKPOINT_NAME, {
                    "kind": "gan", "preset": preset, "config": cfg, "step": step,
                    "samples_consumed": samples_consumed, "world_size": rt.world_size, "ranks": ranks,
                    "models": {"generator": G.state_dict(), "discriminator": D.state_dict(),
                               "encoder": E.state_dict(), "generator_ema": G_ema.state_dict()},
                    "optimizers": {"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict(),
                                   "encoder": opt_e.state_dict()},
                    "scaler": None,  # bf16 autocast needs no loss scaling
                })
        if out_of_time:
            break  # checkpointed above; the run ends as a finished one would (model, validation, summary)
    elapsed = time.perf_counter() - t_start

    summary: dict[str, Any] = {"kind": "gan", "preset": preset, "step": step, "total_steps": total,
                               "world_size": rt.world_size, "device": str(rt.device),
                               "resumed_from_step": state["step"] if state is not None else None,
                               "stopped_early": step < total}
    if rt.is_main:
        metrics, grid = validate()
        log.log_val(step, metrics, grid)
        fingerprint = save_gan(out_dir / MODEL_NAME, generator=G_ema, encoder=E,
                               metadata={"preset": preset, "steps": step, "samples_consumed": samples_consumed})
        summary.update(val=metrics, model_path=str(out_dir / MODEL_NAME), fingerprint=fingerprint)
    return _finish(out_dir, rt, summary, log=log, val_note=val_note, losses=losses, elapsed=elapsed,
                   warm_s=None if t_warm is None else t_start + elapsed - t_warm, steps_run=steps_run,
                   samples_consumed=samples_consumed, cfg=cfg,
                   modules={"generator": G, "discriminator": D, "encoder": E, "generator_ema": G_ema})


# --------------------------------------------------------------------------------------------------------------
# VAE-GAN: one switchable model, a channel count drawn per step; prior learned (rate-aware) or fitted at the end


def _train_vaegan(cfg, rt: Runtime, preset, data_dir, out_dir, resume, dataset, val_dataset, progress):
    total = cfg["steps"]
    rate_aware = cfg["rate_lambda"] > 0
    quant_step = 1.0 if rate_aware else cfg["quant_step"]
    state = _resume_state(cfg, out_dir, resume, "vaegan", preset)

    seed_everything(cfg["seed"])
    model = VAEGAN(cfg["max_channels"], tuple(cfg["channel_set"]), cfg["width"], cfg["downsample"],
                   upsample=cfg["upsample"]).to(rt.device)
    D = PatchDiscriminator(cfg["d_width"]).to(rt.device)
    prior = GaussianChannelPrior(cfg["max_channels"]).to(rt.device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg["lr_d"], betas=(0.5, 0.9))
    opt_prior = torch.optim.Adam(prior.parameters(), lr=cfg["lr_prior"])  # its own optimiser and rate

    step, epoch, batches, samples_consumed = 0, 0, 0, 0
    seed_everything(cfg["seed"] + 1 + rt.rank)
    if state is not None:
        for name, m in (("model", model), ("discriminator", D), ("prior", prior)):
            m.load_state_dict(state["models"][name])
        for name, o in (("model", opt), ("discriminator", opt_d), ("prior", opt_prior)):
            o.load_state_dict(state["optimizers"][name])
        step, samples_consumed = state["step"], state["samples_consumed"]
        epoch, batches = _restore_position(rt, state, cfg)

    model_run, D_run = rt.wrap(model), rt.wrap(D)
    if cfg["compile"]:
        model_run, D_run = torch.compile(model_run), torch.compile(D_run)

    train_ds, val_ds, val_note = _make_datasets(cfg, data_dir, rt, cfg["crop"], dataset, val_dataset)
    stream = BatchStream(train_ds, batch_size=cfg["batch_size"], num_workers=cfg["num_workers"],
                         seed=cfg["seed"], rank=rt.rank, epoch=epoch, batches=batches, pin_memory=rt.cuda,
                         epochs_per_pass=cfg["epochs_per_pass"])
    val_batches = _first_batches(val_ds, cfg["batch_size"], cfg["val_batches"]) if rt.is_main else []
    log = TrainLogger(out_dir, enabled=rt.is_main, resume_step=step if state is not None else None,
                      total_steps=total, log_every=cfg["log_every"], progress=progress, params=cfg)
    channel_set = sorted(cfg["channel_set"], reverse=True)
    latent_side = cfg["crop"] // cfg["downsample"]

    def validate(with_rate: bool) -> tuple[dict[str, float], Any]:
        """What the codec will do: y = round(mu / step), decode(y * step, C) for every C; bpp from the prior."""
        if not val_batches:
            return {}, None
        model.eval()
        metrics: dict[str, float] = {}
        grid = [val_batches[0][:8]]
        with torch.no_grad(), rt.autocast():
            mus = [model.encode(rt.to_device(vb)).float() for vb in val_batches]
            for c in channel_set:
                psnrs, ssims, bits, pixels = [], [], 0.0, 0
                for vb, mu in zip(val_batches, mus):
                    symbols = torch.round(mu / quant_step)
                    rec = model.decode(symbols * quant_step, channels=c).float()
                    p, s = psnr_ssim_batch(vb, rec)
                    psnrs.append(p)
                    ssims.append(s)
                    if with_rate:
                        bits += prior.bits(symbols[:, :c]).item()
                        pixels += vb.shape[0] * vb.shape[2] * vb.shape[3]
                    if vb is val_batches[0]:
                        grid.append(rec[:8].cpu())
                metrics[f"psnr_c{c}"] = float(np.mean(psnrs))
                metrics[f"ssim_c{c}"] = float(np.mean(ssims))
                if with_rate:
                    metrics[f"bpp_c{c}"] = bits / pixels
        model.train()
        return metrics, image_grid(torch.cat([g.float().cpu() for g in grid]), columns=min(8, len(grid[0])))

    t_start, t_warm, steps_run, losses = time.perf_counter(), None, 0, {}
    while step < total:
        step += 1
        x = rt.to_device(stream.next())
        n = x.shape[0]
        factor = lr_factor(step, total, cfg)
        set_lr(opt, cfg["lr"], factor)
        set_lr(opt_d, cfg["lr_d"], factor)
        set_lr(opt_prior, cfg["lr_prior"], factor)
        channels = channel_set[int(torch.randint(len(channel_set), ()).item())]
        mask = model.channel_mask(channels, device=rt.device)
        noise = None
        if rate_aware:  # uniform noise stands in for rounding (Balle et al.), differentiable
            noise = torch.rand(n, cfg["max_channels"], latent_side, latent_side, device=rt.device) - 0.5
        adversarial = cfg["adv_weight"] > 0 and step > cfg["adv_start"]

        with rt.autocast():
            x_hat, mu, logvar, y = model_run(x, mask, noise, True)
        x_hat, mu, logvar, y = x_hat.float(), mu.float(), logvar.float(), y.float()

        loss_d = torch.zeros(())
        if adversarial:
            with rt.autocast():
                scores = D_run(torch.cat([x, x_hat.detach()])).float()
                loss_d = d_hinge_loss(scores[:n], scores[n:])
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            clip(D, cfg["grad_clip"])
            opt_d.step()

        recon = F.mse_loss(x_hat, x) if cfg["recon_loss"] == "mse" else F.l1_loss(x_hat, x)
        loss = recon
        parts = {"recon": recon.item()}
        if cfg["msssim_weight"] > 0:
            msssim = ms_ssim_loss(x_hat, x)
            loss = loss + cfg["msssim_weight"] * msssim
            parts["ms_ssim_loss"] = msssim.item()
        # KL per image pixel (nats): same scale at every crop size and downsampling factor
        kl = kl_divergence(mu, logvar, mask) / cfg["downsample"] ** 2
        if cfg["kl_weight"] > 0:
            loss = loss + cfg["kl_weight"] * kl
        parts["kl"] = kl.item()
        if rate_aware:
            bpp = prior.bits(y[:, :channels]) / (n * x.shape[2] * x.shape[3])
            loss = loss + cfg["rate_lambda"] * bpp
            parts["bpp"] = bpp.item()
        if adversarial:
            D.requires_grad_(False)
            with rt.autocast():
                loss_adv = g_hinge_loss(D(x_hat).float())
            D.requires_grad_(True)
            loss = loss + cfg["adv_weight"] * loss_adv
            parts["loss_adv"] = loss_adv.item()

        opt.zero_grad(set_to_none=True)
        opt_prior.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip(model, cfg["grad_clip"])
        opt.step()
        if rate_aware:
            # the prior is used through likelihood(), not forward(), so DDP cannot sync it: average by hand
            rt.all_reduce_mean_(p.grad for p in prior.parameters() if p.grad is not None)
            clip(prior, cfg["grad_clip"])
            opt_prior.step()

        samples_consumed += n * rt.world_size
        steps_run += 1
        if steps_run == WARMUP_STEPS:
            t_warm = time.perf_counter()
        losses = {"loss": loss.item(), **parts, "loss_d": loss_d.item(), "channels": channels,
                  "grad_norm": grad_norm, "lr": opt.param_groups[0]["lr"]}
        _check_finite(step, losses, out_dir)
        log.log_step(step, stream.epoch, "vaegan", losses)

        if step % cfg["val_every"] == 0 and rt.is_main:
            metrics, grid = validate(with_rate=rate_aware)
            log.log_val(step, metrics, grid)
        out_of_time = _out_of_time(rt, t_start, cfg["max_time_s"])
        if step % cfg["checkpoint_every"] == 0 or step == total or out_of_time:
            ranks = _gather_positions(rt, stream)
            if rt.is_main:
                save_checkpoint(out_dir / CHECKPOINT_NAME, {
                    "kind": "vaegan", "preset": preset, "config": cfg, "step": step,
                    "samples_consumed": samples_consumed, "world_size": rt.world_size, "ranks": ranks,
                    "models": {"model": model.state_dict(), "discriminator": D.state_dict(),
                               "prior": prior.state_dict()},
                    "optimizers": {"model": opt.state_dict(), "discriminator": opt_d.state_dict(),
                                   "prior": opt_prior.state_dict()},
                    "scaler": None,  # bf16 autocast needs no loss scaling
                })
        if out_of_time:
            break  # checkpointed above; the run ends as a finished one would (model, validation, summary)
    elapsed = time.perf_counter() - t_start

    if not rate_aware:
        _fit_prior(model, prior, train_ds, cfg, rt, quant_step)

    summary: dict[str, Any] = {"kind": "vaegan", "preset": preset, "step": step, "total_steps": total,
                               "world_size": rt.world_size, "device": str(rt.device), "quant_step": quant_step,
                               "rate_aware": rate_aware, "prior_fitted": not rate_aware,
                               "resumed_from_step": state["step"] if state is not None else None,
                               "stopped_early": step < total}
    if rt.is_main:
        metrics, grid = validate(with_rate=True)
        log.log_val(step, metrics, grid)
        fingerprint = save_vaegan(out_dir / MODEL_NAME, model=model, prior=prior, quant_step=quant_step,
                                  prior_fitted=not rate_aware,
                                  metadata={"preset": preset, "steps": step, "samples_consumed": samples_consumed})
        summary.update(val=metrics, model_path=str(out_dir / MODEL_NAME), fingerprint=fingerprint)
    return _finish(out_dir, rt, summary, log=log, val_note=val_note, losses=losses, elapsed=elapsed,
                   warm_s=None if t_warm is None else t_start + elapsed - t_warm, steps_run=steps_run,
                   samples_consumed=samples_consumed, cfg=cfg,
                   modules={"model": model, "discriminator": D, "prior": prior})


def _fit_prior(model: VAEGAN, prior: GaussianChannelPrior, train_ds, cfg, rt: Runtime, quant_step: float) -> None:
    """Poster-style (rate_lambda = 0): set the prior to the per-channel mean/std of mu / quant_step.

    Uses ``prior_fit_batches`` batches per rank from the start of epoch 0 (deterministic), all-reduced.
    """
    stats = torch.zeros(3, cfg["max_channels"], dtype=torch.float64, device=rt.device)
    model.eval()
    with torch.no_grad():
        for batch in _first_batches(train_ds, cfg["batch_size"], cfg["prior_fit_batches"]):
            with rt.autocast():
                symbols = (model.encode(rt.to_device(batch)).float() / quant_step).double()
            stats[0] += symbols[:, 0].numel()
            stats[1] += symbols.sum(dim=(0, 2, 3))
            stats[2] += symbols.pow(2).sum(dim=(0, 2, 3))
    model.train()
    if rt.ddp:
        dist.all_reduce(stats)
    if stats[0, 0] == 0:
        print("warning: no training batches to fit the latent prior; it stays N(0, 1)", file=sys.stderr)
        return
    prior.fit(stats[0], stats[1], stats[2])
