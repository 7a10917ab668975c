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

import os

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from stylization.data.coeffs import COEFF_SLICES
from stylization.data.datasets import ClipWindowDataset
from stylization.data.face_model import build_face_model, lip_opening
from stylization.engine.checkpoint import FORMAT, load_file, module_from_checkpoint, resolve_checkpoint
from stylization.engine.stage import StepContext, TrainingStage
from stylization.loading import load_official
from stylization.metrics.landmarks import expression_landmark_errors
from stylization.style_e.diffusion import CosineSchedule
from stylization.style_e.generate import StyleE

METRIC_IMAGE_SIZE = 256


def load_audio2exp(path: str, module: nn.Module) -> nn.Module:
    """SadTalker's file, or an ``audio2exp`` training run / checkpoint of this project."""
    if os.path.isdir(path):
        ckpt_path, state = resolve_checkpoint(path)
        return module_from_checkpoint(state, "audio2exp", True, ckpt_path)
    if not path.endswith(".safetensors"):
        state = load_file(path, "SadTalker's auido2exp_00300-model.pth, or a run of: python train.py stage=audio2exp")
        if state.get("format") == FORMAT:
            return module_from_checkpoint(state, "audio2exp", True, path)
    return load_official("sadtalker_audio2exp", path, module)


class StyleEStage(TrainingStage):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.face_model = build_face_model(str(cfg.data.face_model))
        self.schedule = CosineSchedule(int(cfg.model.diffusion.timesteps))
        self.use_text = bool(cfg.model.denoiser.get("use_text", True))
        self.text_encoder = instantiate(cfg.model.text_encoder) if self.use_text else None
        self.train_audio2exp = cfg.stage.audio2exp_checkpoint is None

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
        s = self.cfg.stage
        return {"style_e": torch.optim.AdamW(self.trainable_parameters(modules), lr=float(s.lr), betas=tuple(s.betas),
                                             weight_decay=float(s.weight_decay))}

    def _dataset(self, split: str) -> ClipWindowDataset:
        d = self.cfg.data
        return ClipWindowDataset(d.root, split=split, window_frames=int(self.cfg.model.denoiser.window_frames),
                                 speakers=d.get("speakers"), seed=int(self.cfg.seed),
                                 skip_damaged=bool(d.skip_damaged), with_mel=True)

    def train_dataset(self):
        return self._dataset(str(self.cfg.data.train_split))

    def val_dataset(self):
        split = self.cfg.data.get("val_split")
        return None if split is None else self._dataset(str(split))

    # -- pieces shared by the steps ---------------------------------------------------------

    def texts(self, sentences: list[str], device) -> torch.Tensor | None:
        if self.text_encoder is None:
            return None
        self.text_encoder.to(device)
        return self.text_encoder(list(sentences)).to(device)

    def audio_condition(self, audio2exp: nn.Module, batch: dict, ctx: StepContext) -> torch.Tensor:
        with ctx.autocast():
            return audio2exp(batch["mel"], batch["source_exp"], batch["blink"]).float()

    def mouth_loss(self, exp_pred: torch.Tensor, batch: dict) -> torch.Tensor:
        fm = self.face_model.to(exp_pred.device)
        ident = batch["coeffs"][..., COEFF_SLICES["id"]]
        return F.l1_loss(lip_opening(fm.keypoints_3d(ident, exp_pred)), lip_opening(fm.keypoints_3d(ident, batch["exp"])))

    def inference_model(self, ctx: StepContext) -> StyleE:
        m = ctx.eval_modules
        diffusion = dict(self.cfg.model.diffusion) if self.cfg.stage.get("diffusion", True) else None
        return StyleE(m["denoiser"], m["audio2exp"], self.text_encoder, diffusion, int(self.cfg.model.overlap_frames))

    # -- steps ----------------------------------------------------------------------------

    def training_step(self, batch, ctx: StepContext):
        s = self.cfg.stage
        x0 = batch["exp"]
        audio_exp = self.audio_condition(ctx.modules["audio2exp"], batch, ctx)
        terms = {}
        if self.train_audio2exp:
            terms["audio2exp_mse"] = F.mse_loss(audio_exp, x0)
        b = x0.shape[0]
        t = torch.randint(0, self.schedule.num_timesteps, (b,), generator=ctx.generator, device=ctx.device)
        noise = torch.randn(x0.shape, generator=ctx.generator, device=ctx.device)
        keep = torch.rand(b, generator=ctx.generator, device=ctx.device) >= float(s.text_dropout)
        x_t = self.schedule.q_sample(x0, t, noise)
        with ctx.autocast():
            pred = ctx.modules["denoiser"](x_t, t, audio_exp.detach(), self.texts(batch["text"], ctx.device), keep)
        pred = pred.float()
        terms["x0_mse"] = F.mse_loss(pred, x0)
        terms["mouth_l1"] = self.mouth_loss(pred, batch)
        loss = terms["x0_mse"] + float(s.mouth_weight) * terms["mouth_l1"]
        if self.train_audio2exp:
            loss = loss + float(s.audio2exp_weight) * terms["audio2exp_mse"]
        grad_norm = ctx.optimize("style_e", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, "grad_norm": grad_norm}

    @torch.no_grad()
    def sample_batch(self, batch, ctx: StepContext) -> torch.Tensor:
        model = self.inference_model(ctx)
        audio_exp = model.audio2exp(batch["mel"], batch["source_exp"], batch["blink"]).float()
        text = self.texts(batch["text"], ctx.device)
        generator = torch.Generator("cpu").manual_seed(0)
        return model.sample_windows(audio_exp, text, float(self.cfg.stage.val_guidance), generator).float()

    def validation_step(self, batch, ctx: StepContext):
        pred = self.sample_batch(batch, ctx)
        out = {"sample_mse": F.mse_loss(pred, batch["exp"])}
        out.update(expression_landmark_errors(self.face_model, batch["coeffs"], pred, METRIC_IMAGE_SIZE))
        return out

    def visualize(self, batch, ctx: StepContext):
        """Sampled (red) over true (green) landmarks for the first window."""
        import numpy as np

        from stylization.data.draw import landmark_canvas

        pred = self.sample_batch({k: v[:1] if torch.is_tensor(v) else v[:1] for k, v in batch.items()}, ctx)
        fm = self.face_model.to(pred.device)
        true = fm.landmarks_from_coeffs(batch["coeffs"][0], 256).cpu().numpy()
        coeffs = batch["coeffs"][0].clone()
        coeffs[:, 80:144] = pred[0]
        fake = fm.landmarks_from_coeffs(coeffs, 256).cpu().numpy()
        frames = np.linspace(0, len(true) - 1, min(8, len(true))).astype(int)
        tiles = [landmark_canvas([true[i], fake[i]], [(0, 160, 0), (220, 0, 0)], 128, 0.5) for i in frames]
        return {"landmarks_true_vs_sampled": torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255.0}
