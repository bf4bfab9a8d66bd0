"""The VAE-GAN recipe: one switchable model, a channel count drawn per step; the latent prior is learned with a
rate term (``rate_lambda`` > 0) or fitted to the latents after training (poster-style). Validation compresses the
validation crops with the ``vaegan`` codec from the model file at every channel count: PSNR, SSIM and bits per
pixel of the files.

``entropy_model="hyperprior"`` (rate-aware only) replaces the per-channel prior by a mean-scale hyperprior
(:mod:`gencomp.models.hyperprior`): z = h_a(mu of the coded channels), and the rate is bits(y | h_s(z~)) + bits(z~)
with uniform noise standing in for rounding on both y and z; only the first C channels' bits count, as with the
channel prior. The whole entropy model learns at ``lr_prior`` (z's density 10x faster), as the channel prior does, so
it can be trained against a (nearly) frozen autoencoder with a tiny ``lr``; with ``init_from`` a channel-prior model's
encoder and decoder are reused and h_s starts out predicting its prior (Hyperprior.start_from_channel_prior).
``hyper_context="checkerboard"`` adds the hyperprior's checkerboard context; its rate term reads the anchors as the
decoder will have them. ``trainable="entropy_model"`` trains the entropy model alone: the encoder runs without
gradients, the decoder not at all, and the loss is the rate (the distortion does not depend on the entropy model
but through the quantisation offsets, which a context moves by less than one step). ``trainable="decoder"`` trains
the decoder alone on the latents the files carry (:meth:`Hyperprior.decoded_latent`: rounded around the entropy
model's means) instead of the noisy proxy it learned from; the encoder and the entropy model stay frozen, so the
files and their rate do not change and the loss is the distortion."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

from gencomp.codecs.base import get_codec
from gencomp.models.gan import d_hinge_loss, g_hinge_loss
from gencomp.models.hyperprior import Hyperprior
from gencomp.models.prior import GaussianChannelPrior
from gencomp.models.store import LoadedModel, save_vaegan
from gencomp.models.vaegan import VAEGAN, PatchDiscriminator, kl_divergence
from gencomp.train.data import first_batches
from gencomp.train.logging import image_grid
from gencomp.train.presets import PresetError
from gencomp.train.recipe import Recipe, clip, lr_factor, measure, set_lr


Z_PRIOR_LR_FACTOR = 10.0  # a hyperprior's z density learns at lr_prior times this


class VAEGANRecipe(Recipe):
    kind = "vaegan"

    def __init__(self, cfg: dict[str, Any], rt):
        super().__init__(cfg, rt)
        self.crop = cfg["crop"]
        self.total_steps = cfg["steps"]
        self.rate_aware = cfg["rate_lambda"] > 0
        self.quant_step = 1.0 if self.rate_aware else cfg["quant_step"]  # the rate term's noise has width 1
        self.prior_fitted = False
        self.channel_set = sorted(cfg["channel_set"], reverse=True)
        weights = cfg.get("channel_weights") or []  # in the setting's order; channel_set is re-sorted here
        share = dict(zip(cfg["channel_set"], weights))
        self.channel_weights = torch.tensor([float(share[c]) for c in self.channel_set]) if weights else None
        # checkpoints written before the option existed carry no entropy_model: they trained the channel prior
        self.entropy_model = cfg.get("entropy_model", "channel")
        if self.entropy_model == "hyperprior" and not self.rate_aware:
            raise PresetError("entropy_model 'hyperprior' is learned with the rate term: set rate_lambda > 0",
                              "entropy_model")
        self.context = cfg.get("hyper_context", "none")
        if self.context != "none" and self.entropy_model != "hyperprior":
            raise PresetError("hyper_context is a part of the hyperprior: set entropy_model=hyperprior",
                              "hyper_context")
        self.trainable = cfg.get("trainable", "all")
        self.entropy_only = self.trainable == "entropy_model"
        if self.entropy_only and not self.rate_aware:
            raise PresetError("trainable=entropy_model trains on the rate term: set rate_lambda > 0", "trainable")
        self.decoder_only = self.trainable == "decoder"
        if self.decoder_only and not self.rate_aware:
            raise PresetError("trainable=decoder reads the files' latents, which a rate-aware model defines: set "
                              "rate_lambda > 0", "trainable")
        self.model = VAEGAN(cfg["max_channels"], tuple(cfg["channel_set"]), cfg["width"], cfg["downsample"],
                            upsample=cfg["upsample"], entropy_model=self.entropy_model)
        self.D = PatchDiscriminator(cfg["d_width"])
        rt.place(self.model, self.D)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"])
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg["lr_d"], betas=(0.5, 0.9))
        self.models = {"model": self.model, "discriminator": self.D}
        self.optimizers = {"model": self.opt, "discriminator": self.opt_d}
        if self.entropy_model == "hyperprior":
            self.prior = None
            self.hyper = Hyperprior(cfg["max_channels"], cfg.get("hyper_channels", 64), self.context).to(rt.device)
            # z's density (two numbers per channel) learns Z_PRIOR_LR_FACTOR times faster than h_a and h_s: at the
            # networks' rate its scales barely move in a fine-tune (measured: 1.0 -> 0.77 in 500 steps at 1e-3, z
            # then cost ~9x its empirical entropy), as CompressAI's separate, faster optimiser for its densities
            self.opt_prior = torch.optim.Adam([
                {"params": [p for name, p in self.hyper.named_parameters() if not name.startswith("z_prior.")],
                 "lr_factor": 1.0},
                {"params": list(self.hyper.z_prior.parameters()), "lr_factor": Z_PRIOR_LR_FACTOR},
            ], lr=cfg["lr_prior"])
            self.models["hyperprior"] = self.hyper
            self.optimizers["prior"] = self.opt_prior
        else:
            self.hyper = None
            self.prior = GaussianChannelPrior(cfg["max_channels"]).to(rt.device)
            self.opt_prior = torch.optim.Adam(self.prior.parameters(), lr=cfg["lr_prior"])  # its own rate
            self.models["prior"] = self.prior
            self.optimizers["prior"] = self.opt_prior

    def init_pairs(self, model: LoadedModel) -> list:
        # a model file of the other entropy model has none of this one: an empty source leaves it fresh, and the
        # run's summary lists it so
        if self.hyper is None:
            return [("model", self.model, model.model), ("prior", self.prior, model.prior or torch.nn.Module())]
        if model.hyperprior is None and model.prior is not None:
            # from a channel-prior model: h_s starts out predicting that prior (its last layer, listed as fresh)
            self.hyper.start_from_channel_prior(model.prior, model.quant_step / self.quant_step)
        return [("model", self.model, model.model), ("hyperprior", self.hyper, model.hyperprior or torch.nn.Module())]

    def _entropy_module(self) -> torch.nn.Module:
        return self.prior if self.hyper is None else self.hyper

    def distribute(self) -> None:
        self.model_run, self.D_run = self.rt.distribute(self.model), self.rt.distribute(self.D)

    def step(self, step: int, x: torch.Tensor) -> tuple[str, dict[str, float]]:
        cfg, rt, n = self.cfg, self.rt, x.shape[0]
        factor = lr_factor(step, self.total_steps, cfg)
        for opt, base in ((self.opt, cfg["lr"]), (self.opt_d, cfg["lr_d"]), (self.opt_prior, cfg["lr_prior"])):
            set_lr(opt, base, factor)
        for group in self.opt_prior.param_groups:  # the hyperprior's z density: faster (see __init__)
            group["lr"] *= group.get("lr_factor", 1.0)
        channels = self._draw_channels()
        mask = self.model.channel_mask(channels, device=rt.device)
        noise = None
        if self.rate_aware:  # uniform noise stands in for rounding (Balle et al.), differentiable
            side = cfg["crop"] // cfg["downsample"]
            noise = torch.rand(n, cfg["max_channels"], side, side, device=rt.device) - 0.5
        if self.entropy_only:
            return "vaegan", self._entropy_step(x, mask, noise, channels)
        if self.decoder_only:
            return "vaegan", self._decoder_step(step, x, mask, channels)
        adversarial = cfg["adv_weight"] > 0 and step > cfg["adv_start"]
        with rt.autocast():
            x_hat, mu, logvar, y = self.model_run(x, mask, noise, True)
        x_hat, mu, logvar, y = x_hat.float(), mu.float(), logvar.float(), y.float()
        loss_d = self._discriminator_step(x, x_hat) if adversarial else torch.zeros(())
        loss, parts = self._loss(x, x_hat, mu, logvar, y, mask, channels, adversarial)

        self.opt.zero_grad(set_to_none=True)
        self.opt_prior.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip(self.model, cfg["grad_clip"])
        self.opt.step()
        if self.rate_aware:
            # the entropy model is used outside the model's forward(), so DDP cannot sync it: average by hand
            entropy = self._entropy_module()
            rt.all_reduce_mean_(p.grad for p in entropy.parameters() if p.grad is not None)
            clip(entropy, cfg["grad_clip"])
            self.opt_prior.step()
        return "vaegan", {"loss": loss.item(), **parts, "loss_d": loss_d.item(), "channels": channels,
                          "grad_norm": grad_norm, "lr": self.opt.param_groups[0]["lr"]}

    def _draw_channels(self) -> int:
        """This step's channel count: equally often each (one randint, the draw of runs before the setting
        existed, so they reproduce), or by ``channel_weights``."""
        if self.channel_weights is None:
            return self.channel_set[int(torch.randint(len(self.channel_set), ()).item())]
        return self.channel_set[int(torch.multinomial(self.channel_weights, 1).item())]

    def _entropy_step(self, x: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor, channels: int
                      ) -> dict[str, float]:
        """trainable=entropy_model: one step of the entropy model on the frozen encoder's latents."""
        with torch.no_grad(), self.rt.autocast():
            mu = self.model.encode(x)
        mu = mu.float() * mask
        bpp, parts = self._rate(mu, (mu + noise) * mask, channels, x.shape[0] * x.shape[2] * x.shape[3])
        self.opt_prior.zero_grad(set_to_none=True)
        bpp.backward()
        entropy = self._entropy_module()
        self.rt.all_reduce_mean_(p.grad for p in entropy.parameters() if p.grad is not None)
        grad_norm = clip(entropy, self.cfg["grad_clip"])
        self.opt_prior.step()
        return {"loss": bpp.item(), **parts, "channels": channels, "grad_norm": grad_norm,
                "lr": self.opt_prior.param_groups[0]["lr"]}

    def _decoder_step(self, step: int, x: torch.Tensor, mask: torch.Tensor, channels: int) -> dict[str, float]:
        """trainable=decoder: one step of the decoder on the latents the codec's files carry (z and y rounded
        around the entropy model's means, quant_scale 1), the encoder and the entropy model frozen, so the files
        (and their rate) stay what they were and the loss is the distortion alone."""
        cfg = self.cfg
        with torch.no_grad():
            with self.rt.autocast():
                mu = self.model.encode(x)
            y_hat = self._file_latent(mu.float() * mask, channels) * self.quant_step
        adversarial = cfg["adv_weight"] > 0 and step > cfg["adv_start"]
        with self.rt.autocast():  # the module, not DDP's wrapper: only the decoder has gradients, averaged below
            x_hat = self.model.decode(self.rt.to_device(y_hat), channels=channels).float()
        loss_d = self._discriminator_step(x, x_hat) if adversarial else torch.zeros(())
        loss, parts = self._distortion(x, x_hat, adversarial)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        decoder = self.model.decoder
        self.rt.all_reduce_mean_(p.grad for p in decoder.parameters() if p.grad is not None)
        grad_norm = clip(decoder, cfg["grad_clip"])
        self.opt.step()
        return {"loss": loss.item(), **parts, "loss_d": loss_d.item(), "channels": channels, "grad_norm": grad_norm,
                "lr": self.opt.param_groups[0]["lr"]}

    def _file_latent(self, mu: torch.Tensor, channels: int) -> torch.Tensor:
        """What a decoder reads from the file of ``mu`` (masked, symbol units) at quant_scale 1."""
        if self.hyper is not None:
            return self.hyper.decoded_latent(mu, channels)
        return torch.round(mu)

    def _rate(self, mu: torch.Tensor, y: torch.Tensor, channels: int, pixels: int
              ) -> tuple[torch.Tensor, dict[str, float]]:
        """Bits per pixel of the coded channels of the noisy latent ``y`` (``mu``: its means, masked)."""
        if self.hyper is None:
            bpp = self.prior.bits(y[:, :channels]) / pixels
            return bpp, {"bpp": bpp.item()}
        # z from the coded channels' means (the codec sees no others); noise stands in for rounding z
        z = self.hyper.analyse(mu)
        z_tilde = z + torch.rand_like(z) - 0.5
        bits_y, bits_z = self.hyper.rate_bits(y, z_tilde, channels, y=mu)
        bpp = (bits_y + bits_z) / pixels
        return bpp, {"bpp": bpp.item(), "bpp_z": (bits_z / pixels).item()}

    def _discriminator_step(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        with self.rt.autocast():
            scores = self.D_run(torch.cat([x, x_hat.detach()])).float()
            loss_d = d_hinge_loss(scores[: x.shape[0]], scores[x.shape[0]:])
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        clip(self.D, self.cfg["grad_clip"])
        self.opt_d.step()
        return loss_d

    def _distortion(self, x, x_hat, adversarial: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """The reconstruction, MS-SSIM and (when ``adversarial``) generator terms of the loss."""
        cfg = self.cfg
        recon = F.mse_loss(x_hat, x) if cfg["recon_loss"] == "mse" else F.l1_loss(x_hat, x)
        loss, parts = recon, {"recon": recon.item()}
        if cfg["msssim_weight"] > 0:
            msssim = ms_ssim_loss(x_hat, x)
            loss = loss + cfg["msssim_weight"] * msssim
            parts["ms_ssim_loss"] = msssim.item()
        if adversarial:
            self.D.requires_grad_(False)
            with self.rt.autocast():
                loss_adv = g_hinge_loss(self.D(x_hat).float())
            self.D.requires_grad_(True)
            loss = loss + cfg["adv_weight"] * loss_adv
            parts["loss_adv"] = loss_adv.item()
        return loss, parts

    def _loss(self, x, x_hat, mu, logvar, y, mask, channels: int, adversarial: bool):
        cfg = self.cfg
        loss, parts = self._distortion(x, x_hat, adversarial)
        # KL per image pixel (nats): same scale at every crop size and downsampling factor
        kl = kl_divergence(mu, logvar, mask) / cfg["downsample"] ** 2
        if cfg["kl_weight"] > 0:
            loss = loss + cfg["kl_weight"] * kl
        parts["kl"] = kl.item()
        if self.rate_aware:
            bpp, rate_parts = self._rate(mu * mask, y, channels, x.shape[0] * x.shape[2] * x.shape[3])
            loss = loss + cfg["rate_lambda"] * bpp
            parts.update(rate_parts)
        return loss, parts

    def finish(self, train_ds) -> None:
        if not self.rate_aware:
            self._fit_prior(train_ds)
        self.prior_fitted = not self.rate_aware

    def _fit_prior(self, train_ds) -> None:
        """Poster-style (rate_lambda = 0): set the prior to the per-channel mean/std of mu / quant_step, over
        ``prior_fit_batches`` batches per rank from the start of epoch 0 (deterministic), all-reduced."""
        cfg, rt = self.cfg, self.rt
        stats = torch.zeros(3, cfg["max_channels"], dtype=torch.float64, device=rt.device)
        self.model.eval()
        with torch.no_grad():
            for batch in first_batches(train_ds, cfg["batch_size"], cfg["prior_fit_batches"]):
                with rt.autocast():
                    symbols = (self.model.encode(rt.to_device(batch)).float() / self.quant_step).double()
                stats[0] += symbols[:, 0].numel()
                stats[1] += symbols.sum(dim=(0, 2, 3))
                stats[2] += symbols.pow(2).sum(dim=(0, 2, 3))
        self.model.train()
        rt.all_reduce_sum_(stats)
        if stats[0, 0] == 0:
            print("warning: no training batches to fit the latent prior; it stays N(0, 1)", file=sys.stderr)
            return
        self.prior.fit(stats[0], stats[1], stats[2])

    def summary(self) -> dict[str, Any]:
        return {"quant_step": self.quant_step, "rate_aware": self.rate_aware, "prior_fitted": not self.rate_aware,
                "entropy_model": self.entropy_model, "hyper_context": self.context,
                "trainable": self.trainable}

    def export(self, path: Path, metadata: dict[str, Any]) -> str:
        return save_vaegan(path, model=self.model, prior=self.prior, quant_step=self.quant_step,
                           prior_fitted=self.prior_fitted, metadata=metadata, hyperprior=self.hyper)

    def validate(self, model: LoadedModel, val_batches: list[torch.Tensor], *, final: bool):
        """Every channel count through the codec. Rates once the prior means something (learned as it trains,
        or fitted at the end): ``file_bpp_c<C>``, the files' sizes; ``bpp_c<C>``, the information content of the
        symbols each file stores under the model's prior -- the files without the container header and the
        entropy coder's 32-bit word padding, which dominate a small crop's file."""
        if not val_batches:
            return {}, None
        metrics: dict[str, float] = {}
        rows = [val_batches[0][:8]]
        for c in self.channel_set:
            # the model as trained: the encoder's own latent, no per-image refinement (that is an encoder choice)
            codec = get_codec("vaegan", model=model, channels=c, refine_steps=0, device=self.rt.device.type)
            scores, decoded = measure(codec, val_batches, payload_bits=codec.information_bits)
            metrics[f"psnr_c{c}"], metrics[f"ssim_c{c}"] = scores["psnr"], scores["ssim"]
            if final or self.rate_aware:
                metrics[f"bpp_c{c}"], metrics[f"file_bpp_c{c}"] = scores["payload_bpp"], scores["file_bpp"]
            rows.append(decoded)
        return metrics, image_grid(torch.cat([r.float().cpu() for r in rows]), columns=min(8, len(rows[0])))


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
