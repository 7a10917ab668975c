"""The base of the stages that predict expression windows: ``audio2exp``, ``style_e``, ``style_e_cgan``.

What the three share, written once: the window datasets of ``cfg.data`` (:class:`ClipWindowDataset`
with mel windows), AdamW from ``stage.lr`` / ``betas`` / ``weight_decay``, the lip-opening loss,
validation landmark errors (M-LMD / F-LMD in pixels of a 256 frame, true identity and pose) and
the landmark drawing logged to TensorBoard. A subclass says how long a window is
(:attr:`WindowStage.window_frames`), what it predicts for validation (:meth:`WindowStage.predict`)
and any validation scalars of its own (:meth:`WindowStage.validation_terms`).
"""

from __future__ import annotations

import abc

import numpy as np
import torch
import torch.nn.functional as F

from stylization.constants import COEFF_SLICES, FACE_CROP_SIZE
from stylization.data.datasets import ClipWindowDataset
from stylization.data.draw import landmark_canvas
from stylization.data.face_model import build_face_model, lip_opening
from stylization.engine.stage import StepContext, TrainingStage
from stylization.metrics.landmarks import expression_landmark_errors

TRUE_COLOUR, PREDICTED_COLOUR = (0, 160, 0), (220, 0, 0)  # RGB of the drawn landmarks


class WindowStage(TrainingStage):
    """A stage trained on windows of ``window_frames`` frames of a clip's expression (see the module docstring)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.face_model = build_face_model(str(cfg.data.face_model))

    # -- what a subclass says ------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def window_frames(self) -> int:
        """W, frames per training window."""

    @abc.abstractmethod
    def predict(self, batch: dict, ctx: StepContext) -> torch.Tensor:
        """The expression the stage's model gives for validation: [B, W, 64] (``ctx.eval_modules``)."""

    def validation_terms(self, pred: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Validation scalars besides the landmark errors, from ``pred`` [B, W, 64] (float32)."""
        return {}

    # -- data and optimisation -------------------------------------------------------------------

    def split_dataset(self, split: str) -> ClipWindowDataset:
        d = self.cfg.data
        return ClipWindowDataset(d.root, split=split, window_frames=self.window_frames, speakers=d.speakers,
                                 seed=int(self.cfg.seed), skip_damaged=bool(d.skip_damaged), with_mel=True)

    def adamw(self, params) -> torch.optim.AdamW:
        """AdamW over ``params`` with ``stage.lr``, ``stage.betas`` and ``stage.weight_decay``."""
        s = self.cfg.stage
        return torch.optim.AdamW(params, lr=float(s.lr), betas=tuple(s.betas), weight_decay=float(s.weight_decay))

    # -- losses and metrics ----------------------------------------------------------------------

    def mouth_loss(self, exp_pred: torch.Tensor, batch: dict) -> torch.Tensor:
        """L1 between the lip openings (keypoint pairs 51-57, 62-66; face-model units) of the predicted
        expression [B, W, 64] and the true one, both on the face model with the clip's identity."""
        fm = self.face_model.to(exp_pred.device)
        ident = batch["coeffs"][..., COEFF_SLICES["id"]]
        return F.l1_loss(lip_opening(fm.keypoints_3d(ident, exp_pred.float())),
                         lip_opening(fm.keypoints_3d(ident, batch["exp"])))

    def validation_step(self, batch: dict, ctx: StepContext) -> dict[str, torch.Tensor]:
        pred = self.predict(batch, ctx).float()
        out = self.validation_terms(pred, batch)
        # Landmark errors and drawings are in pixels of a 256 x 256 frame, as the paper reports them.
        out.update(expression_landmark_errors(self.face_model, batch["coeffs"], pred, FACE_CROP_SIZE))
        return out

    def visualize(self, batch: dict, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Predicted (red) over true (green) landmarks at up to 8 frames of the first window."""
        first = {k: v[:1] for k, v in batch.items()}  # tensors and lists of strings alike
        pred = self.predict(first, ctx).float()[0]
        coeffs = first["coeffs"][0]
        fm = self.face_model.to(coeffs.device)
        predicted = coeffs.clone()
        predicted[:, COEFF_SLICES["exp"]] = pred
        true = fm.landmarks_from_coeffs(coeffs, FACE_CROP_SIZE).cpu().numpy()
        fake = fm.landmarks_from_coeffs(predicted, FACE_CROP_SIZE).cpu().numpy()
        frames = np.linspace(0, len(true) - 1, min(8, len(true))).astype(int)
        tiles = [landmark_canvas([true[i], fake[i]], [TRUE_COLOUR, PREDICTED_COLOUR], 128, 128 / FACE_CROP_SIZE)
                 for i in frames]
        return {"landmarks_true_vs_predicted": torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255.0}
