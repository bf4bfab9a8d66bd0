"""Training presets: plain tables of every training knob, per model kind.

- ``demo``: finishes in about 1.5 min (gan, encoder included) / 2 min (vaegan) on 2 CPU cores with the
  pipeline's tiny corpus; it proves the pipeline end to end, not the method (quality is poor).
- ``cpu-full``: a few hours on 2 CPU cores over the 548 photos; run it in the background, it resumes.
- ``gpu``: one H100: wider models, bigger batches, bf16 autocast, channels_last, torch.compile.

``resolve_preset(kind, name, overrides)`` returns a copy with overrides applied; an unknown key is an error
that lists the valid ones, so a typo in params.yaml never silently does nothing.
"""

from __future__ import annotations

import copy
from typing import Any

# Keys shared by both kinds (the loop reads them the same way for each).
_COMMON = {
    "seed": 0,
    "batch_size": 16,
    "num_workers": 0,  # DataLoader workers per process
    # torch intra-op threads on CPU (0: torch's default). 1 by default because on a shared 2-core machine two
    # OpenMP threads spin-wait for each other: measured 10-40x slower per step under load than one thread.
    # For more cores, run processes instead: torchrun --nproc_per_node=N (DDP), one thread each.
    "threads": 1,
    "downscale_to": 512,  # the loader downsizes photos so crops hold structure, not pixel noise
    # random crops taken from each decoded image per epoch: decoding dominates a small model's step on CPU
    # (measured ~1 CPU-s/step on the demo corpus with 1 crop per image, PNG sources have no draft decode)
    "crops_per_image": 1,
    # epochs per DataLoader pass: >1 keeps the loader's workers running across epoch ends (short epochs on a
    # GPU otherwise stall on every restart); it changes the batch order, so a run cannot change it on resume
    "epochs_per_pass": 1,
    "grad_clip": 1.0,  # max global grad norm, every optimiser
    "lr_decay": "cosine",  # "cosine" (to lr_min_factor * lr at the end, after warmup) or "none"
    "warmup_steps": 0,
    "lr_min_factor": 0.1,
    "checkpoint_every": 500,
    # stop cleanly (checkpoint, validation, model.pt, summary with stopped_early) after this many seconds of
    # training in one invocation; 0: no limit. For schedulers with wall-clock limits: `--resume` continues.
    "max_time_s": 0.0,
    "log_every": 10,  # per-step losses are always written to metrics.jsonl; dvclive every log_every steps
    "val_every": 500,  # validation PSNR/SSIM + sample grid PNG
    "val_batches": 4,
    "compile": False,  # torch.compile the models (GPU only pays off)
    "amp": "auto",  # "auto": bf16 autocast on CUDA, fp32 on CPU; "off": always fp32
    "channels_last": "auto",  # "auto": on CUDA only
}

# GAN stability, measured as the per-pixel std of 64 samples across z (photos: ~0.5; collapsed: ~0). The first
# recipe (PixelNorm generator, equal rates 2e-4 / 2e-4) collapsed to one output whatever z: 0.024 (demo preset,
# 600 steps on the photo corpus); the first cpu-full model inverted Kodak at 12 dB. Gradient clipping was not
# the cause (0.015 without it). A discriminator 4x faster than the generator (TTUR: Heusel et al. 2017; SAGAN's
# 4e-4 / 1e-4) fixed the demo (0.23) but not cpu-full (0.001 at step 1000), nor did adding minibatch-stddev to
# the discriminator (0.004 at step 250). A BatchNorm generator (g_norm: batch) did: 0.53 (tile 64, 300 steps).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "gan": {
        "demo": {
            **_COMMON,
            "steps": 400,  # GAN steps (~0.07 CPU-s each)
            "crops_per_image": 8,
            "encoder_steps": 200,  # then the inversion encoder against the frozen EMA generator
            "batch_size": 16,
            "tile": 32,  # 32 px tiles keep the demo inside its time budget; the poster used 64
            "latent_dim": 100,
            "g_norm": "batch",
            "g_width": 16,
            "d_width": 16,
            "e_width": 16,
            "lr_g": 1e-4,
            "lr_d": 4e-4,  # two time-scale update rule (TTUR): see the note above PRESETS
            "lr_encoder": 5e-4,
            "betas": [0.0, 0.99],
            "ema_decay": 0.99,
            "encoder_latent_weight": 0.1,
            "checkpoint_every": 100,
            "val_every": 150,
            "val_batches": 2,
        },
        "cpu-full": {
            **_COMMON,
            # ~1.1 steps/s with --set threads=2 on an idle 2-core machine (35 images/s; 22 with one thread), so
            # 6,500 steps take about 1.7 h. The first version (10,000 + 2,500 steps, 1 crop per image) needed
            # ~4 h here: the 9,601 steps it reached showed sample diversity settled by step 4,000 (BENCHMARKS.md)
            "steps": 5_000,
            "encoder_steps": 1_500,
            "batch_size": 32,
            "crops_per_image": 4,  # 1 crop: the loader's JPEG decoding cost a quarter of the step time
            "tile": 64,
            "latent_dim": 100,
            "g_norm": "batch",
            "g_width": 24,
            "d_width": 24,
            "e_width": 24,
            "lr_g": 1e-4,
            "lr_d": 4e-4,
            "lr_encoder": 3e-4,
            "betas": [0.0, 0.99],
            "ema_decay": 0.999,
            "encoder_latent_weight": 0.1,
            "checkpoint_every": 500,
            "val_every": 1000,
            "num_workers": 1,
        },
        "gpu": {
            **_COMMON,
            "steps": 100_000,
            "encoder_steps": 30_000,
            "batch_size": 128,
            # many crops per decoded image: at GPU speed, JPEG decoding (not the model) would bound a step
            "crops_per_image": 8,
            "epochs_per_pass": 8,  # see _COMMON: a 500-image corpus is 4,000 crops, ~1 s of GPU per epoch
            "tile": 64,
            "latent_dim": 100,
            "g_norm": "batch",
            "g_width": 64,
            "d_width": 64,
            "e_width": 64,
            "lr_g": 1e-4,
            "lr_d": 4e-4,
            "lr_encoder": 3e-4,
            "betas": [0.0, 0.99],
            "ema_decay": 0.999,
            "encoder_latent_weight": 0.1,
            "checkpoint_every": 2000,
            "log_every": 50,
            "val_every": 5000,
            "val_batches": 16,
            "num_workers": 8,
            "threads": 0,
            "compile": True,
        },
    },
    "vaegan": {
        "demo": {
            **_COMMON,
            "steps": 800,  # ~0.05 CPU-s each
            "crops_per_image": 8,
            "batch_size": 8,
            "crop": 64,
            "max_channels": 28,
            "channel_set": [28, 16, 8, 4, 2],
            "width": 32,
            "d_width": 16,
            "downsample": 16,
            "upsample": "subpixel",  # decoder upsampling: "subpixel" (fast, no full-res conv) or "nearest"
            "lr": 5e-4,
            "lr_prior": 1e-2,
            "lr_d": 2e-4,
            "recon_loss": "mse",  # "mse" or "l1"
            "msssim_weight": 0.0,
            "kl_weight": 1e-4,
            "adv_weight": 0.01,
            "adv_start": 400,  # the adversarial term joins once reconstructions are sensible
            "rate_lambda": 0.0,  # 0: poster-style, prior fitted after training; > 0: rate-aware, prior learned
            "quant_step": 0.25,  # latent step for rate_lambda = 0 (rate-aware training forces 1.0)
            "prior_fit_batches": 8,
            "checkpoint_every": 200,
            "val_every": 400,
            "val_batches": 2,
        },
        "cpu-full": {
            **_COMMON,
            # the recipe of the shipped default model: rate-aware (learned prior, rate term), MSE, a light
            # adversarial term for the last 3k steps. Measured ~0.23 s/step on one core (width 64, 128-px
            # crops, subpixel decoder): 18k steps take ~1.2 h. rate_lambda=0 gives the poster-style model.
            "steps": 18_000,
            "batch_size": 8,
            "crop": 128,
            "crops_per_image": 4,
            "max_channels": 28,
            "channel_set": [28, 16, 8, 4, 2],
            "width": 64,
            "d_width": 32,
            "downsample": 16,
            "upsample": "subpixel",
            "lr": 3e-4,
            "lr_prior": 1e-3,
            "lr_d": 1e-4,
            "recon_loss": "mse",
            "msssim_weight": 0.0,
            "kl_weight": 1e-4,
            "adv_weight": 0.001,
            "adv_start": 15_000,
            "rate_lambda": 0.004,  # loss = MSE + rate_lambda * bpp: ~0.1 bpp at C = 8 on photos
            "quant_step": 0.25,  # used only when rate_lambda = 0 (rate-aware training forces 1.0)
            "prior_fit_batches": 64,
            "warmup_steps": 500,
            "checkpoint_every": 1000,
            "val_every": 2000,
            "val_batches": 8,
            "num_workers": 1,
        },
        "gpu": {
            **_COMMON,
            "steps": 200_000,
            "batch_size": 32,
            "crops_per_image": 4,  # see the GAN's gpu preset
            "epochs_per_pass": 8,
            "crop": 256,
            "max_channels": 28,
            "channel_set": [28, 16, 8, 4, 2],
            "width": 192,
            "d_width": 64,
            "downsample": 16,
            "upsample": "subpixel",
            "lr": 1e-4,
            "lr_prior": 1e-3,
            "lr_d": 1e-4,
            "recon_loss": "mse",
            "msssim_weight": 0.1,
            "kl_weight": 1e-4,
            "adv_weight": 0.005,
            "adv_start": 50_000,
            "rate_lambda": 0.0,
            "quant_step": 0.25,
            "prior_fit_batches": 256,
            "warmup_steps": 1000,
            "checkpoint_every": 5000,
            "log_every": 50,
            "val_every": 5000,
            "val_batches": 16,
            "num_workers": 8,
            "threads": 0,
            "compile": True,
        },
    },
}

_CHOICES = {
    "lr_decay": ("cosine", "none"),
    "amp": ("auto", "off"),
    "channels_last": ("auto", "off"),
    "recon_loss": ("mse", "l1"),
    "upsample": ("subpixel", "nearest"),
    "g_norm": ("batch", "pixel"),
}


def resolve_preset(kind: str, name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset ``name`` for ``kind`` with ``overrides`` applied, validated. Returns a fresh dict."""
    if kind not in PRESETS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds: {', '.join(PRESETS)}")
    if name not in PRESETS[kind]:
        raise ValueError(f"unknown {kind} preset {name!r}; valid presets: {', '.join(PRESETS[kind])}")
    cfg = copy.deepcopy(PRESETS[kind][name])
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"unknown {kind} training setting(s) {unknown}; valid keys: {', '.join(sorted(cfg))}")
    for key, value in overrides.items():
        default = cfg[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"setting {key!r} must be true/false, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"setting {key!r} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, str):
                # YAML 1.1 (PyYAML) reads "3e-4" as a string: it needs "3.0e-4". Accept the common spelling.
                try:
                    value = float(value)
                except ValueError:
                    pass
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"setting {key!r} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(default, list):
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"setting {key!r} must be a list, got {value!r}")
            value = list(value)
        cfg[key] = value
    for key, allowed in _CHOICES.items():
        if key in cfg and cfg[key] not in allowed:
            raise ValueError(f"setting {key!r} must be one of {allowed}, got {cfg[key]!r}")
    _check_ranges(kind, cfg)
    return cfg


def _check_ranges(kind: str, cfg: dict[str, Any]) -> None:
    if cfg["threads"] < 0:
        raise ValueError("setting 'threads' must be >= 0 (0: torch's default)")
    positive = ["steps", "batch_size", "checkpoint_every", "log_every", "val_every"]
    for key in positive:
        if cfg[key] < 1:
            raise ValueError(f"setting {key!r} must be >= 1, got {cfg[key]}")
    if kind == "gan":
        if cfg["encoder_steps"] < 0:
            raise ValueError("setting 'encoder_steps' must be >= 0")
        if not 0.0 <= cfg["ema_decay"] < 1.0:
            raise ValueError("setting 'ema_decay' must be in [0, 1)")
    else:
        if cfg["crop"] % cfg["downsample"]:
            raise ValueError(f"crop {cfg['crop']} must be divisible by downsample {cfg['downsample']}")
        if not cfg["channel_set"] or max(cfg["channel_set"]) > cfg["max_channels"] or min(cfg["channel_set"]) < 1:
            raise ValueError(f"channel_set {cfg['channel_set']} must lie within 1..max_channels")
        if cfg["rate_lambda"] < 0 or cfg["kl_weight"] < 0 or cfg["adv_weight"] < 0:
            raise ValueError("loss weights must be >= 0")
        if cfg["quant_step"] <= 0:
            raise ValueError("setting 'quant_step' must be > 0")
