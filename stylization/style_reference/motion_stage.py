"""Training stage ``style_ref_motion``: the motion generator, audio -> 68 x 3 landmark motion.

Items are windows of ``stage.window_frames`` frames (:class:`~stylization.data.keypoint_motion.KeypointMotionDataset`):
their mel windows and their motion (face motion: keypoints in the head's frame, and pose motion, each
minus the clip's mean). The loss (weights ``stage.loss``) is the mean squared error in the generator's
units (per-coordinate standard deviations of the training motion, computed once when the run starts
and kept in the model) of the face motion, of its 20 mouth points, of the pose motion, and of the
frame-to-frame velocities of both. The paper
trains the audio encoding and the motion generator with Adam at lr 1e-4 and batch 64.

Validation (held-out speakers): the same losses, and the 2D landmark distances the benchmark uses
(M-LMD on the mouth, F-LMD on all 68 points, pixels of a 224 crop) between the true landmarks and the
clip's means plus the predicted motion, composed and projected; ``still_*`` is the same for no motion at
all (the face held at its mean), the baseline a trained generator must beat.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn

from stylization.constants import FACE_CROP_SIZE, MOUTH
from stylization.data.face_model import build_face_model, project
from stylization.data.keypoint_motion import KeypointMotionDataset, compose
from stylization.engine.distributed import unwrap
from stylization.engine.stage import StepContext, TrainingStage, loss_weights
from stylization.metrics.landmarks import f_lmd, m_lmd

LOSS_TERMS = ("face", "mouth", "pose", "velocity")
MOUTH_POINTS = list(MOUTH)


class StyleRefMotionStage(TrainingStage):
    """The motion generator (see the module docstring)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.weights = loss_weights(cfg.stage.loss, LOSS_TERMS)
        self.face_model = build_face_model(str(cfg.data.face_model))

    def split_dataset(self, split: str) -> KeypointMotionDataset:
        d = self.cfg.data
        return KeypointMotionDataset(d.root, self.face_model, split=split, window_frames=int(self.cfg.stage.window_frames),
                                     speakers=d.speakers, seed=int(self.cfg.seed), skip_damaged=bool(d.skip_damaged))

    def build_modules(self) -> dict[str, nn.Module]:
        generator = instantiate(self.cfg.model)
        # the output scale: the training motion's spread (a fresh run; a resumed one loads the saved buffer)
        generator.set_motion_scale(*self.split_dataset(str(self.cfg.data.train_split)).motion_scale())
        return {"generator": generator}

    def build_optimizers(self, modules):
        s = self.cfg.stage
        return {"generator": torch.optim.Adam(modules["generator"].parameters(), lr=float(s.lr), betas=tuple(s.betas))}

    def terms(self, generator: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted loss, terms) of the generator on a batch; ``_face`` / ``_pose`` hold the predicted motion."""
        g = unwrap(generator)
        face, pose = generator(batch["mel"])
        pred, true = g.normalise(face, pose), g.normalise(batch["face_motion"], batch["pose_motion"])
        err = (pred - true).pow(2)
        n_face = face.shape[-2] * 3
        mouth = err[..., :n_face].unflatten(-1, (-1, 3))[..., MOUTH_POINTS, :]
        terms = {"face": err[..., :n_face].mean(), "mouth": mouth.mean(), "pose": err[..., n_face:].mean(),
                 "velocity": (pred.diff(dim=1) - true.diff(dim=1)).pow(2).mean()}
        loss = sum(self.weights[k] * terms[k] for k in LOSS_TERMS if self.weights[k])
        terms["_face"], terms["_pose"] = face, pose
        return loss, terms

    def training_step(self, batch, ctx: StepContext):
        with ctx.autocast():
            loss, terms = self.terms(ctx.modules["generator"], batch)
        grad_norm = ctx.optimize("generator", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items() if not k.startswith("_")},
                "grad_norm": grad_norm}

    @torch.no_grad()
    def validation_step(self, batch, ctx: StepContext):
        loss, terms = self.terms(ctx.eval_modules["generator"], batch)
        fm, base_face, base_pose = self.face_model, batch["base_face"][:, None], batch["base_pose"][:, None]
        posed = lambda face, pose: project(compose(fm, base_face, base_pose, face, pose), FACE_CROP_SIZE)  # noqa: E731
        true = posed(batch["face_motion"], batch["pose_motion"])
        fake = posed(terms.pop("_face"), terms.pop("_pose"))
        still = posed(torch.zeros_like(batch["face_motion"]), torch.zeros_like(batch["pose_motion"]))
        return {"loss": loss, **terms, "m_lmd": m_lmd(fake, true), "f_lmd": f_lmd(fake, true),
                "still_m_lmd": m_lmd(still, true), "still_f_lmd": f_lmd(still, true)}
