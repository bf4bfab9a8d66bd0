"""The GAN recipe: ``steps`` adversarial steps (with ``recon_weight`` > 0 the inversion encoder and the generator
also learn to reconstruct the real batch), then ``encoder_steps`` inversion-encoder steps against the frozen EMA
generator. Validation inverts the validation crops with the ``gan-inversion`` codec (its encoder
guess, no search) from the model file, and measures generator diversity on fixed latents."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gencomp.codecs.base import get_codec
from gencomp.models.gan import (
    Discriminator,
    Generator,
    InversionEncoder,
    d_hinge_loss,
    ema_update,
    g_hinge_loss,
    inversion_losses,
    latent_moment_loss,
)
from gencomp.models.store import LoadedModel, save_gan
from gencomp.train.logging import image_grid
from gencomp.train.recipe import Recipe, clip, lr_factor, measure, set_lr

SAMPLE_SEED = 1234  # fixed latents for the sample grid, drawn from their own generator
SAMPLES = 32  # sample_diversity: per-pixel std across this many samples (about 0.5 for photos, ~0.02 collapsed)


class GANRecipe(Recipe):
    kind = "gan"

    def __init__(self, cfg: dict[str, Any], rt):
        super().__init__(cfg, rt)
        self.crop = cfg["tile"]
        self.total_steps = cfg["steps"] + cfg["encoder_steps"]
        self.G = Generator(cfg["latent_dim"], cfg["tile"], cfg["g_width"], norm=cfg["g_norm"])
        self.D = Discriminator(cfg["tile"], cfg["d_width"])
        self.E = InversionEncoder(cfg["latent_dim"], cfg["tile"], cfg["e_width"])
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        rt.place(self.G, self.D, self.E, self.G_ema)
        betas = tuple(cfg["betas"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg["lr_g"], betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg["lr_d"], betas=betas)
        self.opt_e = torch.optim.Adam(self.E.parameters(), lr=cfg["lr_encoder"])
        self.models = {"generator": self.G, "discriminator": self.D, "encoder": self.E, "generator_ema": self.G_ema}
        self.optimizers = {"generator": self.opt_g, "discriminator": self.opt_d, "encoder": self.opt_e}
        self.sample_z = torch.randn(SAMPLES, cfg["latent_dim"], generator=torch.Generator().manual_seed(SAMPLE_SEED))

    def init_pairs(self, model: LoadedModel) -> list:
        # the file holds the EMA generator: the live generator and its average both start from it
        return [("generator", self.G, model.generator), ("generator_ema", self.G_ema, model.generator),
                ("encoder", self.E, model.encoder)]

    def distribute(self) -> None:
        self.G_run, self.D_run, self.E_run = (self.rt.distribute(m) for m in (self.G, self.D, self.E))

    def step(self, step: int, batch: torch.Tensor) -> tuple[str, dict[str, float]]:
        real = batch * 2 - 1
        if step <= self.cfg["steps"]:
            return "gan", self._adversarial_step(step, real)
        return "encoder", self._encoder_step(step, real)

    def _adversarial_step(self, step: int, real: torch.Tensor) -> dict[str, float]:
        cfg, rt, n = self.cfg, self.rt, real.shape[0]
        factor = lr_factor(step, cfg["steps"], cfg)
        set_lr(self.opt_g, cfg["lr_g"], factor)
        set_lr(self.opt_d, cfg["lr_d"], factor)
        z = torch.randn(n, cfg["latent_dim"], device=rt.device)
        recon_weight = cfg["recon_weight"]
        if recon_weight:
            set_lr(self.opt_e, cfg["lr_encoder"], factor)
        # discriminator: one forward over real and fake together (one DDP forward per backward)
        with rt.autocast():
            if recon_weight:  # one generator forward for samples and reconstructions: shared BatchNorm statistics
                z_real = self.E_run(real)
                fake, recon = self.G_run(torch.cat([z, z_real])).split(n)
            else:
                fake = self.G_run(z)
            scores = self.D_run(torch.cat([real, fake.detach()])).float()
            loss_d = d_hinge_loss(scores[:n], scores[n:])
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        clip(self.D, cfg["grad_clip"])
        self.opt_d.step()
        # generator: through the bare discriminator, frozen, so no gradient is spent on (or synced for) D
        self.D.requires_grad_(False)
        with rt.autocast():
            loss_g = g_hinge_loss(self.D(fake).float())
        logs = {}
        if recon_weight:  # the generator and the encoder learn to reconstruct the real batch as well
            pixel = F.mse_loss(recon.float(), real)
            moments = latent_moment_loss(z_real.float())
            loss_total = loss_g + recon_weight * (pixel + cfg["recon_latent_weight"] * moments)
            self.opt_e.zero_grad(set_to_none=True)
            logs = {"recon_mse": pixel.item(), "latent_moments": moments.item()}
        else:
            loss_total = loss_g
        self.opt_g.zero_grad(set_to_none=True)
        loss_total.backward()
        self.D.requires_grad_(True)
        clip(self.G, cfg["grad_clip"])
        self.opt_g.step()
        if recon_weight:
            clip(self.E, cfg["grad_clip"])
            self.opt_e.step()
        ema_update(self.G_ema, self.G, cfg["ema_decay"])
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), **logs, "lr": self.opt_g.param_groups[0]["lr"]}

    def _encoder_step(self, step: int, real: torch.Tensor) -> dict[str, float]:
        cfg, rt = self.cfg, self.rt
        set_lr(self.opt_e, cfg["lr_encoder"], lr_factor(step - cfg["steps"], cfg["encoder_steps"], cfg))
        z = torch.randn(real.shape[0], cfg["latent_dim"], device=rt.device)
        with rt.autocast():
            pixel, latent = inversion_losses(self.E_run, self.G_ema, real, z)
            loss_e = pixel + cfg["encoder_latent_weight"] * latent
        self.opt_e.zero_grad(set_to_none=True)
        loss_e.backward()
        clip(self.E, cfg["grad_clip"])
        self.opt_e.step()
        return {"loss_e": loss_e.item(), "pixel_mse": pixel.item(), "latent_mse": latent.item(),
                "lr": self.opt_e.param_groups[0]["lr"]}

    def export(self, path: Path, metadata: dict[str, Any]) -> str:
        return save_gan(path, generator=self.G_ema, encoder=self.E, metadata=metadata)

    def validate(self, model: LoadedModel, val_batches: list[torch.Tensor], *, final: bool):
        with torch.no_grad():
            samples = model.generator(self.sample_z.to(self.rt.device)).float().cpu()
        metrics = {"sample_diversity": float(samples.std(0).mean())}
        rows = [(samples[:8] + 1) / 2]
        if val_batches:  # meaningful once the encoder trains
            codec = get_codec("gan-inversion", model=model, steps=0, device=self.rt.device.type)
            scores, decoded = measure(codec, val_batches)
            metrics.update(inversion_psnr=scores["psnr"], inversion_ssim=scores["ssim"])
            rows += [val_batches[0][:8], decoded]
        return metrics, image_grid(torch.cat([r.float().cpu() for r in rows]), columns=8)
