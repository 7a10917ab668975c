"""Training stage ``styletalk``: StyleTalk's generator with the losses of the paper (its release has none).

Items are :class:`~stylization.data.style_clips.StyleClipDataset` windows of L frames (64 in the
paper): the target's phoneme windows and expressions, a style clip of the same (speaker, emotion)
that drives the decoder, a positive clip of that style and a negative clip of another.

Two phases, as the paper trains them (its D_sync and D_style are pretrained, then frozen):

1. ``step < stage.pretrain_steps``: the lip-sync discriminator learns real mouths against their
   own phoneme windows (in sync) and against windows of other frames of the item (shifted by at
   least ``stage.sync_min_offset`` frames); the style discriminator learns to name the style of
   real windows (cross-entropy). Nothing else trains.
2. then the generator (content encoder, style encoder, decoder) and the temporal discriminator:

   L = rec · (0.1 · L1 + 0.9 · (1 − SSIM)) + trip · triplet + sync · (−log P_sync)
       + style · CE(D_style(pred), style) + tem · hinge-GAN(D_tem)

   with the paper's weights 88, 1, 1, 1, 1 (``stage.loss``). SSIM is computed along time for each
   coefficient (Gaussian window of 11 frames, σ 1.5; constants from ``stage.ssim_range``). A weight
   of 0 removes a term and its discriminator's work (Table 2's "w/o" rows).

Validation: M-LMD / F-LMD (pixels of a 256 frame, true identity and pose) of the EMA generator
driven by each window's style clip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from stylization.constants import COEFF_SLICES, MOUTH
from stylization.data.style_clips import StyleClipDataset, split_styles
from stylization.engine.stage import StepContext, loss_weights
from stylization.errors import ConfigError
from stylization.style_e.window_stage import WindowStage
from stylization.styletalk.discriminators import mouth_windows, style_classification_loss, sync_loss
from stylization.styletalk.losses import sequence_ssim, triplet_loss

LOSSES = ("rec", "trip", "sync", "style", "tem")


class StyleTalkStage(WindowStage):
    """StyleTalk's generator, D_sync, D_style and D_tem (see the module docstring)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        s = cfg.stage
        self.weights = loss_weights(s.loss, LOSSES)
        if int(s.clip_frames) < 16:
            raise ConfigError(f"stage.clip_frames={s.clip_frames}: the temporal discriminators need at least 16 frames")
        # The style classes of D_style: the training split's (speaker, emotion) pairs.
        self.styles = split_styles(str(cfg.data.root), str(cfg.data.train_split), cfg.data.speakers, with_phonemes=True)
        if self.weights["style"] > 0 and len(self.styles) < 2:
            raise ConfigError("the style loss needs at least two styles in the training split; set stage.loss.style=0")
        self.mouth = list(MOUTH)
        # D_style's size comes from the data; recorded in the config the checkpoints save
        OmegaConf.update(cfg, "model.style_discriminator.outputs", max(len(self.styles), 1), force_add=True)

    @property
    def window_frames(self) -> int:
        return int(self.cfg.stage.clip_frames)

    def split_dataset(self, split: str) -> StyleClipDataset:
        s, d = self.cfg.stage, self.cfg.data
        styles = self.styles if split == str(d.train_split) else None
        return StyleClipDataset(d.root, split, self.window_frames, int(s.style_frames), styles,
                                float(s.hard_negative), d.speakers, int(self.cfg.seed))

    # -- building -------------------------------------------------------------------------

    def build_modules(self) -> dict[str, nn.Module]:
        m = self.cfg.model
        return {"generator": instantiate(m.generator), "sync_discriminator": instantiate(m.sync_discriminator),
                "style_discriminator": instantiate(m.style_discriminator),
                "temporal_discriminator": instantiate(m.temporal_discriminator, outputs=1)}

    def build_optimizers(self, modules):
        s = self.cfg.stage

        def adam(params, lr):
            return torch.optim.Adam(params, lr=float(lr), betas=tuple(s.betas))

        return {"generator": adam(modules["generator"].parameters(), s.lr),
                "temporal_discriminator": adam(modules["temporal_discriminator"].parameters(), s.lr),
                "pretrain": adam(list(modules["sync_discriminator"].parameters())
                                 + list(modules["style_discriminator"].parameters()), s.pretrain_lr)}

    # -- pieces ---------------------------------------------------------------------------

    def mouth_motion(self, exp: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
        """Expressions [B, L, 64] -> per-frame mouth windows [B, L, F, 20, 3]: the mouth keypoints'
        displacement from the identity's neutral mouth, over D_sync's frames around each frame."""
        fm = self.face_model.to(exp.device)
        ident = coeffs[..., COEFF_SLICES["id"]]
        moved = fm.keypoints_3d(ident, exp.float())[..., self.mouth, :]
        rest = fm.keypoints_3d(ident, torch.zeros_like(exp, dtype=torch.float32))[..., self.mouth, :]
        return mouth_windows(moved - rest, int(self.cfg.model.sync_discriminator.frames))

    def sync_probability(self, disc: nn.Module, exp: torch.Tensor, batch: dict, phonemes: torch.Tensor) -> torch.Tensor:
        """D_sync's probability [B·L] that each frame's mouth matches ``phonemes`` [B, L, 11]."""
        mouth = self.mouth_motion(exp, batch["coeffs"])
        return disc(mouth.flatten(0, 1), phonemes.flatten(0, 1))

    def shifted_phonemes(self, phonemes: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """The item's phoneme windows rolled in time by a random shift of at least ``sync_min_offset``
        frames (both ways): every frame paired with another frame's phonemes."""
        n, lo = phonemes.shape[1], int(self.cfg.stage.sync_min_offset)
        shift = int(torch.randint(lo, n - lo + 1, (1,), generator=ctx.generator, device=ctx.device))
        return phonemes.roll(shift, dims=1)

    def reconstruction(self, pred: torch.Tensor, true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L1, 1 − SSIM) between expression sequences [B, L, 64]."""
        return F.l1_loss(pred, true), 1 - sequence_ssim(pred, true, float(self.cfg.stage.ssim_range))

    # -- steps ----------------------------------------------------------------------------

    def pretrain_step(self, batch, ctx: StepContext) -> dict:
        terms, loss = {}, 0.0
        if self.weights["sync"] > 0:
            disc = ctx.modules["sync_discriminator"]
            real = self.sync_probability(disc, batch["exp"], batch, batch["phonemes"])
            off = self.sync_probability(disc, batch["exp"], batch, self.shifted_phonemes(batch["phonemes"], ctx))
            terms["d_sync"] = 0.5 * (sync_loss(real, 1.0) + sync_loss(off, 0.0))
            terms["d_sync_accuracy"] = 0.5 * ((real > 0.5).float().mean() + (off <= 0.5).float().mean())
            loss = loss + terms["d_sync"]
        if self.weights["style"] > 0:
            logits = ctx.modules["style_discriminator"](batch["exp"])
            terms["d_style"] = style_classification_loss(logits, batch["style_label"])
            terms["d_style_accuracy"] = (logits.mean(-1).argmax(-1) == batch["style_label"]).float().mean()
            loss = loss + terms["d_style"]
        if terms:
            ctx.optimize("pretrain", loss)
        return {k: v.detach() for k, v in terms.items()}

    def training_step(self, batch, ctx: StepContext):
        if ctx.step < int(self.cfg.stage.pretrain_steps):
            return self.pretrain_step(batch, ctx)
        w, s = self.weights, self.cfg.stage
        styles = torch.cat([batch["style_exp"], batch["positive_exp"], batch["negative_exp"]])
        masks = torch.cat([batch["style_mask"], batch["positive_mask"], batch["negative_mask"]])
        with ctx.autocast():
            pred, codes = ctx.modules["generator"](batch["phonemes"], styles, masks, return_codes=True)
        pred, codes = pred.float(), codes.float()
        anchor, positive, negative = codes.chunk(3)
        l1, dssim = self.reconstruction(pred, batch["exp"])
        terms = {"l1": l1, "ssim_loss": dssim, "rec": 0.1 * l1 + 0.9 * dssim,
                 "trip": triplet_loss(anchor, positive, negative, float(s.triplet_margin))}
        if w["sync"] > 0:
            terms["sync"] = sync_loss(self.sync_probability(ctx.modules["sync_discriminator"], pred, batch,
                                                            batch["phonemes"]), 1.0)
        if w["style"] > 0:
            terms["style"] = style_classification_loss(ctx.modules["style_discriminator"](pred), batch["style_label"])
        tem = ctx.modules["temporal_discriminator"]
        if w["tem"] > 0:
            terms["tem"] = -tem(pred).mean()
        loss = sum(w[k] * terms[k] for k in LOSSES if k in terms and w[k] > 0)
        grad_norm = ctx.optimize("generator", loss)
        out = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, "grad_norm": grad_norm}
        if w["tem"] > 0:
            d_loss = F.relu(1 - tem(batch["exp"])).mean() + F.relu(1 + tem(pred.detach())).mean()
            ctx.optimize("temporal_discriminator", d_loss)
            out["d_tem"] = d_loss.detach()
        return out

    @torch.no_grad()
    def predict(self, batch, ctx: StepContext) -> torch.Tensor:
        """The EMA generator driven by each window's style clip: [B, L, 64]."""
        return ctx.eval_modules["generator"](batch["phonemes"], batch["style_exp"], batch["style_mask"]).float()

    def validation_terms(self, pred, batch):
        l1, dssim = self.reconstruction(pred, batch["exp"])
        return {"l1": l1, "ssim_loss": dssim}
