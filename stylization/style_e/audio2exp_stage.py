"""Training stage ``audio2exp``: SadTalker's Audio2Exp trained from scratch on a corpus.

Style-E's audio condition is Audio2Exp's per-frame expression. SadTalker's released
weights are the default; this stage trains the same network where they cannot be used
(the synthetic corpus, another face model) or fine-tunes it.

Loss: MSE on the 64 expression coefficients + ``mouth_weight`` · L1 on the lip-opening
distances (keypoint pairs 51-57 and 62-66) of the face model with the clip's identity.
Validation reports the loss terms and M-LMD / F-LMD in pixels of a 256 frame (ground-truth
identity and pose, predicted vs true expression).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from stylization.data.coeffs import COEFF_SLICES
from stylization.data.datasets import ClipWindowDataset
from stylization.data.draw import landmark_canvas
from stylization.data.face_model import build_face_model, lip_opening
from stylization.engine.stage import StepContext, TrainingStage
from stylization.metrics.landmarks import expression_landmark_errors

METRIC_IMAGE_SIZE = 256


class Audio2ExpStage(TrainingStage):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.face_model = build_face_model(str(cfg.data.face_model))

    def build_modules(self) -> dict[str, nn.Module]:
        # Channels-last weights from the start: ~1.6x faster convolutions on CPUs, same values.
        return {"audio2exp": instantiate(self.cfg.model).to(memory_format=torch.channels_last)}

    def build_optimizers(self, modules):
        s = self.cfg.stage
        return {"audio2exp": torch.optim.AdamW(modules["audio2exp"].parameters(), lr=float(s.lr),
                                               betas=tuple(s.betas), weight_decay=float(s.weight_decay))}

    def _dataset(self, split: str) -> ClipWindowDataset:
        d = self.cfg.data
        return ClipWindowDataset(d.root, split=split, window_frames=int(self.cfg.stage.window_frames),
                                 speakers=d.get("speakers"), seed=int(self.cfg.seed), skip_damaged=bool(d.skip_damaged),
                                 with_mel=True)

    def train_dataset(self):
        return self._dataset(str(self.cfg.data.train_split))

    def val_dataset(self):
        split = self.cfg.data.get("val_split")
        return None if split is None else self._dataset(str(split))

    def _predict(self, net, batch):
        return net(batch["mel"], batch["source_exp"], batch["blink"])

    def _losses(self, pred, batch):
        fm = self.face_model.to(pred.device)
        ident = batch["coeffs"][..., COEFF_SLICES["id"]]
        open_pred = lip_opening(fm.keypoints_3d(ident, pred.float()))
        open_true = lip_opening(fm.keypoints_3d(ident, batch["exp"]))
        return {"exp_mse": F.mse_loss(pred.float(), batch["exp"]), "mouth_l1": F.l1_loss(open_pred, open_true)}

    def training_step(self, batch, ctx: StepContext):
        with ctx.autocast():
            pred = self._predict(ctx.modules["audio2exp"], batch)
        terms = self._losses(pred, batch)
        loss = terms["exp_mse"] + float(self.cfg.stage.mouth_weight) * terms["mouth_l1"]
        grad_norm = ctx.optimize("audio2exp", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, "grad_norm": grad_norm}

    def _landmarks(self, coeffs, exp):
        fm = self.face_model.to(coeffs.device)
        c = coeffs.clone()
        c[..., COEFF_SLICES["exp"]] = exp.float()
        return fm.landmarks_from_coeffs(c, METRIC_IMAGE_SIZE)

    def validation_step(self, batch, ctx: StepContext):
        pred = self._predict(ctx.eval_modules["audio2exp"], batch)
        out = dict(self._losses(pred, batch))
        out.update(expression_landmark_errors(self.face_model, batch["coeffs"], pred.float(), METRIC_IMAGE_SIZE))
        return out

    def visualize(self, batch, ctx: StepContext):
        """Predicted (red) over true (green) landmarks for the first window's frames."""
        pred = self._predict(ctx.eval_modules["audio2exp"], batch)
        lm_pred = self._landmarks(batch["coeffs"][:1], pred[:1])[0].cpu().numpy()
        lm_true = self._landmarks(batch["coeffs"][:1], batch["exp"][:1])[0].cpu().numpy()
        frames = np.linspace(0, lm_true.shape[0] - 1, min(8, lm_true.shape[0])).astype(int)
        tiles = [landmark_canvas([lm_true[i], lm_pred[i]], [(0, 160, 0), (220, 0, 0)], 128, 0.5) for i in frames]
        return {"landmarks_true_vs_pred": torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255.0}
