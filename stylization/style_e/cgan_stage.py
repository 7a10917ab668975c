"""Training stage ``style_e_cgan``: Table 2's "w/o diffusion" ablation, a conditional GAN
predicting the same windows as ``style_e``.

The generator is the same :class:`~stylization.style_e.denoiser.DiffMLP` fed with noise z
in place of x_t and timestep 0, so both rows of the table share architecture and
conditions; it is saved as ``denoiser`` and sampled by :class:`~stylization.style_e.generate.StyleE`
in one shot (``stage.diffusion: false``). The discriminator
(:class:`~stylization.style_e.discriminator.WindowDiscriminator`, ``stage.discriminator``) judges
a window together with its conditions.

Losses: generator = ``adv_weight`` · non-saturating GAN + MSE on x0 + ``mouth_weight`` ·
lip-opening L1 (+ Audio2Exp's own MSE when it trains jointly); discriminator = non-saturating GAN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from stylization.engine.stage import StepContext
from stylization.style_e.stage import StyleEStage


class StyleECGANStage(StyleEStage):
    def build_modules(self):
        modules = super().build_modules()
        modules["discriminator"] = instantiate(self.cfg.stage.discriminator)
        return modules

    def build_optimizers(self, modules):
        return {"style_e": self.adamw(self.trainable_parameters(modules)),
                "discriminator": self.adamw(modules["discriminator"].parameters())}

    def training_step(self, batch, ctx: StepContext):
        s = self.cfg.stage
        x0 = batch["exp"]
        audio_exp = self.audio_condition(ctx.modules["audio2exp"], batch, ctx)
        cond = audio_exp.detach()
        text = self.texts(batch["text"], ctx.device)
        b = x0.shape[0]
        t0 = torch.zeros(b, dtype=torch.long, device=ctx.device)
        z = torch.randn(x0.shape, generator=ctx.generator, device=ctx.device)
        generator, disc = ctx.modules["denoiser"], ctx.modules["discriminator"]

        with ctx.autocast():
            fake = generator(z, t0, cond, text).float()
            d_real, d_fake = disc(x0, cond, text), disc(fake.detach(), cond, text)
        d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        ctx.optimize("discriminator", d_loss)

        with ctx.autocast():
            g_adv = F.softplus(-disc(fake, cond, text)).mean()
        terms = {"d_loss": d_loss.detach(), "g_adv": g_adv.detach(), "x0_mse": F.mse_loss(fake, x0),
                 "mouth_l1": self.mouth_loss(fake, batch)}
        loss = float(s.adv_weight) * g_adv + terms["x0_mse"] + float(s.mouth_weight) * terms["mouth_l1"]
        loss = self.audio2exp_term(audio_exp, batch, terms, loss)
        ctx.optimize("style_e", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}
