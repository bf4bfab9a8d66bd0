"""Training presets: plain tables of every training knob, per model kind.

- ``demo``: finishes in about 1.5 min (gan, encoder included) / 2 min (vaegan) on 2 CPU cores with the
  pipeline's tiny corpus; it proves the pipeline end to end, not the method (quality is poor).
- ``cpu-full``: a few hours on 2 CPU cores over the 548 photos; run it in the background, it resumes.
- ``gpu``: one H100: wider models, bigger batches, bf16 autocast, channels_last, torch.compile.
- ``finetune``: the shipped models' architectures, started from their weights and trained for minutes on the
  corpus at hand (what the demo pipeline runs, so its tables show the method's real quality).

``resolve_preset(kind, name, overrides)`` returns a copy with overrides applied; an unknown key is an error
that lists the valid ones, so a typo in params.yaml never silently does nothing.
"""

from __future__ import annotations

import copy
from typing import Any

# channel_weights: how often a step trains each of channel_set's channel counts, in channel_set's order (relative
# weights); [] trains each equally often. The codec's default is the largest count, which a uniform draw trains on
# only one step in len(channel_set): weighting it up spends more of a short run on the rate that ships.

# Keys shared by both kinds (the loop reads them the same way for each).
_COMMON = {
    "seed": 0,
    # a model file (or a shipped model's name, e.g. "vaegan-default") whose matching weights a fresh run starts
    # from; "" starts from random weights. Ignored on --resume: the checkpoint has the weights.
    "init_from": "",
    # "preset": the model's shape (widths, channels, entropy model, ...) is this table's; "init": init_from's
    # model file's, so a fine-tune follows whatever model ships (keys set explicitly still win)
    "architecture": "preset",
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
    # "auto": bf16 autocast on CUDA, fp32 on CPU; "bf16": bf16 autocast on either (on a CPU with AMX or
    # AVX512-BF16 about 2x the steps of fp32, see BENCHMARKS.md; elsewhere emulated and slower); "off": fp32
    "amp": "auto",
    "channels_last": "auto",  # "auto": on CUDA, and on a CPU training in bf16; "off": never
}

# What both gpu presets share: one H100/H200, long runs, so logs and validations are sparser.
_GPU = {
    "log_every": 50,
    "val_every": 5000,
    "val_batches": 16,
    "num_workers": 8,
    "threads": 0,
    "compile": True,
}

# The GAN recipe (BatchNorm generator, a discriminator learning 4x faster than the generator: TTUR, Heusel et al.
# 2017) is the one that did not collapse to a single output on photos; BENCHMARKS.md "The GAN collapsed, and what
# fixed it" has the measurements behind it.
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
            # the recipe of the shipped GAN, ~52 min at --set threads=2 on 2 idle cores; inversion quality varies
            # a lot between CPU runs of it (BENCHMARKS.md "The GAN cpu-full preset, run to its end")
            "steps": 2_500,
            "encoder_steps": 700,
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
            "ema_decay": 0.998,
            "encoder_latent_weight": 0.1,
            "checkpoint_every": 250,
            "val_every": 500,
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
            **_GPU,
            "checkpoint_every": 2000,
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
            "channel_weights": [],  # each channel count's share of the steps (note above _COMMON)
            "width": 32,
            "d_width": 16,
            "downsample": 16,
            "upsample": "subpixel",  # the other presets train "subpixel-blur" (no grid pattern); the demo keeps
            # "subpixel", so demo runs started before that change still resume (tests/test_train_old_checkpoints.py)
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
            # adversarial term for the last 3k steps; ~1.2 h on one core (BENCHMARKS.md "CPU runs behind the
            # shipped default models"). rate_lambda=0 gives the poster-style model.
            "steps": 18_000,
            "batch_size": 8,
            "crop": 128,
            "crops_per_image": 4,
            "max_channels": 28,
            "channel_set": [28, 16, 8, 4, 2],
            "channel_weights": [],  # each channel count's share of the steps (note above _COMMON)
            "width": 64,
            "d_width": 32,
            "downsample": 16,
            "upsample": "subpixel-blur",
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
            "channel_weights": [],  # each channel count's share of the steps (note above _COMMON)
            "width": 192,
            "d_width": 64,
            "downsample": 16,
            "upsample": "subpixel-blur",
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
            **_GPU,
            "checkpoint_every": 5000,
        },
    },
}

# ``finetune``: the shipped models' architectures, started from their weights (``init_from``) and trained briefly
# on the corpus at hand: minutes on 2 CPU cores, and the pipeline's tables show what the method does (the demo
# pipeline uses it). The GAN's discriminator starts fresh, so its adversarial phase is kept short and slow; most
# of the budget goes to the inversion encoder, which adapts to the corpus against the frozen generator.
# The budgets are the demo's 10-minute limit's: on the demo's 3 test images (120 px) the earlier 20 + 60 GAN steps
# and 200 VAE-GAN steps (5.3 minutes) moved no row past noise (VAE-GAN 28 channels 23.54 -> 23.56 dB, GAN 100 steps
# 8 bits 17.14 -> 16.90 dB); a fine-tune that matters needs cpu-full or gpu.
PRESETS["gan"]["finetune"] = {
    **PRESETS["gan"]["cpu-full"],
    "init_from": "gan-default",
    "architecture": "init",
    "steps": 10,
    "encoder_steps": 30,
    "lr_g": 1e-5,
    "lr_d": 1e-4,
    "lr_encoder": 5e-5,
    "checkpoint_every": 20,
    "val_every": 1_000,
    "val_batches": 2,
    "num_workers": 0,
}
PRESETS["vaegan"]["finetune"] = {
    **PRESETS["vaegan"]["cpu-full"],
    "init_from": "vaegan-default",
    "architecture": "init",
    "steps": 100,
    "lr": 5e-5,
    "lr_prior": 1e-4,
    "warmup_steps": 20,
    "adv_start": 100,  # no adversarial term: a fresh discriminator would only add noise in so few steps
    "checkpoint_every": 50,
    "val_every": 1_000,
    "val_batches": 2,
    "num_workers": 0,
}

# The latent's entropy model (gencomp.models.vaegan.ENTROPY_MODELS): "channel", a per-channel prior; "hyperprior",
# a mean-scale hyperprior whose side latent has hyper_channels channels at H/64 (needs rate_lambda > 0), with
# hyper_context "checkerboard" a second coding pass conditioned on the first (gencomp.models.hyperprior).
# trainable "entropy_model" trains the entropy model alone against the frozen encoder (no decoder pass: a step
# costs an encoder forward), e.g. to add a context to a trained hyperprior model; "decoder" trains the decoder alone
# on the latents the files carry (rounded around the entropy model's means, not noisy), which leaves the files and
# their rate as they were (needs rate_lambda > 0).
for _vaegan_preset in PRESETS["vaegan"].values():
    _vaegan_preset.setdefault("entropy_model", "channel")
    _vaegan_preset.setdefault("hyper_channels", 64)
    _vaegan_preset.setdefault("hyper_context", "none")
    _vaegan_preset.setdefault("trainable", "all")

# Inversion-aware GAN training (``recon_weight`` > 0): every adversarial step also trains the inversion encoder
# and the generator together to reconstruct the real batch, G(E(x)) ~ x, so that the images of the domain lie in
# the generator's range, where a 100-step search can reach them; the latent moment term keeps E(x) distributed as
# the N(0, 1) draws the generator is trained on (and inside the quantiser's clip). 0: the plain GAN (the shipped
# photo GAN's recipe).
for _gan_preset in PRESETS["gan"].values():
    _gan_preset.setdefault("recon_weight", 0.0)
    _gan_preset.setdefault("recon_latent_weight", 0.1)


class PresetError(ValueError):
    """A preset name, or an override, that cannot be used; ``key`` names the setting (None: the preset name)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


_CHOICES = {
    "lr_decay": ("cosine", "none"),
    "amp": ("auto", "bf16", "off"),
    "channels_last": ("auto", "off"),
    "recon_loss": ("mse", "l1"),
    "upsample": ("subpixel", "subpixel-blur", "nearest"),
    "g_norm": ("batch", "pixel"),
    "entropy_model": ("channel", "hyperprior"),
    "hyper_context": ("none", "checkerboard"),
    "trainable": ("all", "entropy_model", "decoder"),
    "architecture": ("preset", "init"),
}


# Every number's valid range: (minimum, minimum included, maximum or None, maximum included).
_AT_LEAST_1 = (1, True, None, False)
_POSITIVE = (0, False, None, False)
_NOT_NEGATIVE = (0, True, None, False)
_RANGES: dict[str, tuple] = {
    **dict.fromkeys(["batch_size", "checkpoint_every", "log_every", "val_every", "crops_per_image",
                     "epochs_per_pass", "downscale_to", "latent_dim", "tile", "g_width", "d_width", "e_width",
                     "max_channels", "width", "downsample", "crop", "prior_fit_batches"], _AT_LEAST_1),
    **dict.fromkeys(["lr_g", "lr_d", "lr_encoder", "lr", "lr_prior", "grad_clip", "quant_step"], _POSITIVE),
    **dict.fromkeys(["steps", "seed", "num_workers", "threads", "warmup_steps", "max_time_s", "val_batches",
                     "encoder_steps", "adv_start", "encoder_latent_weight", "recon_weight", "recon_latent_weight",
                     "msssim_weight", "kl_weight", "adv_weight", "rate_lambda"], _NOT_NEGATIVE),
    "lr_min_factor": (0, True, 1, True),
    "ema_decay": (0, True, 1, False),
    "hyper_channels": _AT_LEAST_1,
}


def resolve_preset(kind: str, name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset ``name`` for ``kind`` with ``overrides`` applied, validated. Returns a fresh dict; raises
    :class:`PresetError` naming the setting."""
    if kind not in PRESETS:
        raise PresetError(f"unknown model kind {kind!r}; valid kinds: {', '.join(PRESETS)}")
    if name not in PRESETS[kind]:
        raise PresetError(f"unknown {kind} preset {name!r}; valid presets: {', '.join(PRESETS[kind])}")
    cfg = copy.deepcopy(PRESETS[kind][name])
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise PresetError(f"unknown {kind} training setting(s) {unknown}; valid keys: {', '.join(sorted(cfg))}",
                          unknown[0])
    for key, value in overrides.items():
        cfg[key] = _typed(key, cfg[key], value)
    for key, allowed in _CHOICES.items():
        if key in cfg and cfg[key] not in allowed:
            raise PresetError(f"setting {key!r} must be one of {allowed}, got {cfg[key]!r}", key)
    _check_ranges(kind, cfg)
    return cfg


def _typed(key: str, default: Any, value: Any) -> Any:
    """``value`` as the type of the preset's ``default`` (strict: true is not 1, 1.5 is not an integer)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise PresetError(f"setting {key!r} must be true/false, got {value!r}", key)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise PresetError(f"setting {key!r} must be an integer, got {value!r}", key)
    elif isinstance(default, float):
        if isinstance(value, str):
            # YAML 1.1 (PyYAML) reads "3e-4" as a string: it needs "3.0e-4". Accept the common spelling.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PresetError(f"setting {key!r} must be a number, got {value!r}", key)
        value = float(value)
    elif isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            raise PresetError(f"setting {key!r} must be a list, got {value!r}", key)
        value = list(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise PresetError(f"setting {key!r} must be a string, got {value!r}", key)
    return value


def _check_ranges(kind: str, cfg: dict[str, Any]) -> None:
    for key, (low, low_in, high, high_in) in _RANGES.items():
        if key not in cfg:
            continue
        v = cfg[key]
        if (v < low if low_in else v <= low) or (high is not None and (v > high if high_in else v >= high)):
            bounds = f"{'>=' if low_in else '>'} {low}" + (f" and {'<=' if high_in else '<'} {high}" if high else "")
            raise PresetError(f"setting {key!r} must be {bounds}, got {v!r}", key)
    if kind == "vaegan" and cfg["steps"] < 1:
        raise PresetError(f"setting 'steps' must be >= 1, got {cfg['steps']!r}", "steps")
    if kind == "gan" and cfg["steps"] == 0 and not (cfg["encoder_steps"] >= 1 and cfg["init_from"]):
        # no adversarial steps: only the inversion encoder trains, against a generator that must come from a file
        raise PresetError("setting 'steps' = 0 trains only the inversion encoder: it needs encoder_steps >= 1 and "
                          "init_from (the model whose generator it inverts)", "steps")
    if kind == "gan":
        betas = cfg["betas"]
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise PresetError(f"setting 'betas' must be two numbers in [0, 1), got {betas!r}", "betas")
    else:
        if cfg["crop"] % cfg["downsample"]:
            raise PresetError(f"crop {cfg['crop']} must be divisible by downsample {cfg['downsample']}", "crop")
        channel_set = cfg["channel_set"]
        if (not channel_set or not all(isinstance(c, int) and not isinstance(c, bool) for c in channel_set)
                or max(channel_set) > cfg["max_channels"] or min(channel_set) < 1):
            raise PresetError(f"channel_set {channel_set} must be integers within 1..max_channels", "channel_set")
        weights = cfg.get("channel_weights", [])
        if weights and (len(weights) != len(channel_set)
                        or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
                        or sum(weights) <= 0):
            raise PresetError(f"channel_weights {weights} must be [] or {len(channel_set)} numbers >= 0 (one per "
                              f"channel_set entry, in its order) with a positive sum", "channel_weights")
