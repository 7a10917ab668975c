"""The "w/o diffusion" ablation of Table 2: a conditional GAN predicting the same windows.

The generator is the same :class:`~stylization.style_e.denoiser.DiffMLP` fed with noise z
in place of x_t and timestep 0, so both rows of the table share architecture and
conditions; it is saved as ``denoiser`` and sampled by :class:`~stylization.style_e.generate.StyleE`
in one shot. The discriminator judges a window together with its conditions.

Losses: generator = ``adv_weight`` · non-saturating GAN + MSE on x0 + ``mouth_weight`` ·
lip-opening L1; discriminator = non-saturating GAN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from stylization.engine.stage import StepContext
from stylization.style_e.stage import StyleEStage


class WindowDiscriminator(nn.Module):
    """(window [B, W, 64], audio condition [B, W, 64], text [B, D] or None) -> realism logits [B].

    Per-frame features of the concatenated inputs, two temporal convolutions, mean over time.
    """

    def __init__(self, exp_dim: int = 64, text_dim: int = 512, width: int = 256, use_text: bool = True):
        super().__init__()
        self.use_text, self.text_dim = use_text, text_dim
        self.frame = nn.Linear(2 * exp_dim + (text_dim if use_text else 0), width)
        self.temporal = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv1d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
                                      nn.Conv1d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.head = nn.Linear(width, 1)

    def forward(self, window: torch.Tensor, audio_exp: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        b, w, _ = window.shape
        parts = [window, audio_exp]
        if self.use_text:
            parts.append(text[:, None].expand(b, w, self.text_dim))
        h = self.temporal(self.frame(torch.cat(parts, -1)).transpose(1, 2))
        return self.head(h.mean(-1)).squeeze(-1)


class StyleECGANStage(StyleEStage):
    def build_modules(self):
        modules = super().build_modules()
        modules["discriminator"] = instantiate(self.cfg.stage.discriminator)
        return modules

    def build_optimizers(self, modules):
        s = self.cfg.stage
        make = lambda params: torch.optim.AdamW(params, lr=float(s.lr), betas=tuple(s.betas),  # noqa: E731
                                                weight_decay=float(s.weight_decay))
        return {"style_e": make(self.trainable_parameters(modules)),
                "discriminator": make(modules["discriminator"].parameters())}

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
        if self.train_audio2exp:
            terms["audio2exp_mse"] = F.mse_loss(audio_exp, x0)
            loss = loss + float(s.audio2exp_weight) * terms["audio2exp_mse"]
        ctx.optimize("style_e", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}
