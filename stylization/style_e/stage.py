"""Training stage ``style_e``: the text-controlled emotional motion diffusion.

Per window of W frames (``ClipWindowDataset``): x0 is the clip's own expression; the audio
condition is Audio2Exp on the *same* clip's mel windows with the source expression (a
frame of another clip of the same speaker, neutral where there is one) and the blink
track (the official loop used another clip's expression here at training time and
Audio2Exp at inference; we use Audio2Exp in both). The text condition is the CLIP vector of
one of the clip's sentences, replaced by the learned null text with probability
``stage.text_dropout`` (classifier-free guidance).

Loss: MSE on x0 + ``mouth_weight`` · L1 on the lip openings (keypoints 51-57, 62-66) of the
face model with the clip's identity. Audio2Exp is frozen when ``stage.audio2exp_checkpoint``
names SadTalker's file or an ``audio2exp`` run; otherwise it is trained jointly with its
own MSE (weight ``stage.audio2exp_weight``) and its output is detached as the condition.

Validation samples windows with the inference sampler and reports M-LMD / F-LMD (pixels of a
256 frame, true identity and pose).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from stylization.engine.stage import StepContext
from stylization.errors import ConfigError
from stylization.runs import load_audio2exp
from stylization.style_e.diffusion import diffusion_sampler
from stylization.style_e.generate import StyleE
from stylization.style_e.window_stage import WindowStage


class StyleEStage(WindowStage):
    """Style-E's denoiser (and Audio2Exp, unless frozen) on expression windows (see the module docstring)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        s, m = cfg.stage, cfg.model
        if not 0.0 <= float(s.text_dropout) <= 1.0:
            raise ConfigError(f"stage.text_dropout={s.text_dropout} is a probability; use a value in [0, 1]")
        # The reverse diffusion that validation samples with; built here so that a bad
        # model.diffusion fails before any data loads. None: a one-shot generator (style_e_cgan).
        self.sampler = diffusion_sampler(**OmegaConf.to_container(m.diffusion, resolve=True)) if s.diffusion else None
        self.use_text = bool(m.denoiser.use_text)
        self.text_encoder = instantiate(m.text_encoder) if self.use_text else None
        if self.text_encoder is not None and self.text_encoder.embed_dim != int(m.denoiser.text_dim):
            dim = self.text_encoder.embed_dim
            raise ConfigError(f"model.denoiser.text_dim={m.denoiser.text_dim} but the text encoder gives {dim}-d "
                              f"vectors; set model.denoiser.text_dim={dim}")
        self.train_audio2exp = s.audio2exp_checkpoint is None

    @property
    def window_frames(self) -> int:
        return int(self.cfg.model.denoiser.window_frames)

    # -- building -----------------------------------------------------------------------

    def build_modules(self) -> dict[str, nn.Module]:
        # Channels-last weights from the start: ~1.6x faster convolutions on CPUs, same values.
        audio2exp = instantiate(self.cfg.model.audio2exp).to(memory_format=torch.channels_last)
        if not self.train_audio2exp:
            audio2exp = load_audio2exp(str(self.cfg.stage.audio2exp_checkpoint), audio2exp).eval().requires_grad_(False)
        return {"denoiser": instantiate(self.cfg.model.denoiser), "audio2exp": audio2exp}

    def trainable_parameters(self, modules):
        params = list(modules["denoiser"].parameters())
        return params + list(modules["audio2exp"].parameters()) if self.train_audio2exp else params

    def build_optimizers(self, modules):
        return {"style_e": self.adamw(self.trainable_parameters(modules))}

    # -- pieces shared by the steps ---------------------------------------------------------

    def texts(self, sentences: list[str], device) -> torch.Tensor | None:
        """Sentences -> text vectors [B, D] on ``device`` (None for the no-text ablation)."""
        if self.text_encoder is None:
            return None
        self.text_encoder.to(device)
        return self.text_encoder(list(sentences)).to(device)

    def audio_condition(self, audio2exp: nn.Module, batch: dict, ctx: StepContext) -> torch.Tensor:
        """Audio2Exp's expression [B, W, 64] for the batch's mel windows, source expression and blinks."""
        with ctx.autocast():
            return audio2exp(batch["mel"], batch["source_exp"], batch["blink"]).float()

    def audio2exp_term(self, audio_exp: torch.Tensor, batch: dict, terms: dict, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` plus Audio2Exp's own weighted MSE (recorded in ``terms``) when it trains jointly."""
        if not self.train_audio2exp:
            return loss
        terms["audio2exp_mse"] = F.mse_loss(audio_exp, batch["exp"])
        return loss + float(self.cfg.stage.audio2exp_weight) * terms["audio2exp_mse"]

    def inference_model(self, ctx: StepContext) -> StyleE:
        m = ctx.eval_modules
        return StyleE(m["denoiser"], m["audio2exp"], self.text_encoder, self.sampler,
                      overlap_frames=int(self.cfg.model.overlap_frames))

    # -- steps ----------------------------------------------------------------------------

    def training_step(self, batch, ctx: StepContext):
        s = self.cfg.stage
        x0 = batch["exp"]
        audio_exp = self.audio_condition(ctx.modules["audio2exp"], batch, ctx)
        b = x0.shape[0]
        schedule = self.sampler.schedule
        t = torch.randint(0, schedule.num_timesteps, (b,), generator=ctx.generator, device=ctx.device)
        noise = torch.randn(x0.shape, generator=ctx.generator, device=ctx.device)
        keep = torch.rand(b, generator=ctx.generator, device=ctx.device) >= float(s.text_dropout)
        x_t = schedule.q_sample(x0, t, noise)
        with ctx.autocast():
            pred = ctx.modules["denoiser"](x_t, t, audio_exp.detach(), self.texts(batch["text"], ctx.device), keep)
        pred = pred.float()
        terms = {"x0_mse": F.mse_loss(pred, x0), "mouth_l1": self.mouth_loss(pred, batch)}
        loss = self.audio2exp_term(audio_exp, batch, terms, terms["x0_mse"] + float(s.mouth_weight) * terms["mouth_l1"])
        grad_norm = ctx.optimize("style_e", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, "grad_norm": grad_norm}

    @torch.no_grad()
    def predict(self, batch, ctx: StepContext) -> torch.Tensor:
        """Windows sampled as at inference (noise seeded 0, guidance ``stage.val_guidance``): [B, W, 64]."""
        model = self.inference_model(ctx)
        audio_exp = model.audio2exp(batch["mel"], batch["source_exp"], batch["blink"]).float()
        text = self.texts(batch["text"], ctx.device)
        generator = torch.Generator("cpu").manual_seed(0)
        return model.sample_windows(audio_exp, text, float(self.cfg.stage.val_guidance), generator).float()

    def validation_terms(self, pred, batch):
        return {"sample_mse": F.mse_loss(pred, batch["exp"])}
