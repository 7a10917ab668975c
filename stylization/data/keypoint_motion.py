"""Landmark motion in 3D: the reference-frame style transfer method's motion representation.

The method's motion generator predicts, and its style transfer compares, 68 landmarks in 3D
("vectorized into (68 x 3)-dimensional vectors") covering mouth, eyes and head. Here they come from
the face model (:class:`~stylization.data.face_model.FaceModel`), in two parts:

* **face motion** [T, 68, 3]: the keypoints in the head's own frame (shape + expression, no pose)
  minus their clip mean — what the mouth, eyes and brows do;
* **pose motion** [T, 6]: the head's Euler angles (radians) and translation minus their clip mean —
  what the head does.

Kept apart because in world coordinates a small head turn moves the mouth points more than speech
does, and a generator trained on the mixture learns mostly the (unpredictable) head sway. Posed
keypoints, for drawing and for the metrics, come from :func:`compose`: R(base angle + angle) · (base face
+ face motion) + base translation + translation, which projects exactly onto the corpus's 2D
landmarks when the motion is the clip's own. Adding Euler angles is exact for one axis and close
for the few degrees heads turn while talking.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from stylization.constants import COEFF_SLICES
from stylization.data.corpus import Corpus
from stylization.data.datasets import ClipWindowDataset
from stylization.data.face_model import FaceModel


def _tensor(coeffs) -> torch.Tensor:
    return coeffs.float() if torch.is_tensor(coeffs) else torch.as_tensor(np.asarray(coeffs, np.float32))


def face_keypoints(face_model: FaceModel, coeffs) -> torch.Tensor:
    """Coefficients [..., 257 or 260] -> keypoints in the head's frame [..., 68, 3] (face model units)."""
    c = _tensor(coeffs)
    return face_model.keypoints_3d(c[..., COEFF_SLICES["id"]][..., :face_model.id_dim],
                                   c[..., COEFF_SLICES["exp"]][..., :face_model.exp_dim])


def head_pose(coeffs) -> torch.Tensor:
    """Coefficients [..., 260] -> pose [..., 6]: Euler angles (pitch, yaw, roll; radians), translation."""
    c = _tensor(coeffs)
    return torch.cat([c[..., COEFF_SLICES["angle"]], c[..., COEFF_SLICES["trans"]]], -1)


def compose(face_model: FaceModel, base_face: torch.Tensor, base_pose: torch.Tensor, face_motion: torch.Tensor,
            pose_motion: torch.Tensor) -> torch.Tensor:
    """Base face [68, 3] and pose [6] plus motion ([..., 68, 3], [..., 6]) -> posed keypoints [..., 68, 3]."""
    from stylization.data.face_model import rotation_matrix

    pose = base_pose + pose_motion
    rot = rotation_matrix(pose[..., :3])
    return torch.einsum("...ij,...pj->...pi", rot, base_face + face_motion) + pose[..., None, 3:]


@dataclasses.dataclass
class Motion:
    """A clip's motion split as the module docstring says: base face [68, 3] and pose [6] (clip means),
    face motion [T, 68, 3], pose motion [T, 6]."""

    base_face: torch.Tensor
    base_pose: torch.Tensor
    face: torch.Tensor
    pose: torch.Tensor

    @classmethod
    def of(cls, face_model: FaceModel, coeffs) -> "Motion":
        face, pose = face_keypoints(face_model, coeffs), head_pose(coeffs)
        base_face, base_pose = face.mean(0), pose.mean(0)
        return cls(base_face, base_pose, face - base_face, pose - base_pose)

    def keypoints(self, face_model: FaceModel) -> torch.Tensor:
        """Posed keypoints [T, 68, 3]."""
        return compose(face_model, self.base_face, self.base_pose, self.face, self.pose)


class KeypointMotionDataset(ClipWindowDataset):
    """:class:`~stylization.data.datasets.ClipWindowDataset` items (with ``mel``) plus the window's
    ``face_motion`` float32 [W, 68, 3] and ``pose_motion`` [W, 6] (relative to its whole clip's means,
    see :class:`Motion`) and those means ``base_face`` [68, 3] and ``base_pose`` [6].

    Args:
        corpus: a corpus or its root; face_model: the corpus's face model (its coefficients' basis);
        the other keyword arguments go to :class:`ClipWindowDataset`.
    """

    def __init__(self, corpus: Corpus | str | os.PathLike, face_model: FaceModel, **kwargs):
        kwargs.setdefault("with_mel", True)
        super().__init__(corpus, **kwargs)
        self.face_model = face_model
        with torch.no_grad():  # one pass over the split's coefficients
            self.means = {}
            for rec in self.clips:
                coeffs = self.corpus.load_coeffs(rec)
                self.means[rec.id] = (face_keypoints(face_model, coeffs).mean(0), head_pose(coeffs).mean(0))

    def motion_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-coordinate standard deviations ([68, 3], [6]) of the split's face and pose motion."""
        faces, poses = [], []
        with torch.no_grad():
            for rec in self.clips:
                m = Motion.of(self.face_model, self.corpus.load_coeffs(rec))
                faces.append(m.face)
                poses.append(m.pose)
        return torch.cat(faces).std(0), torch.cat(poses).std(0)

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        base_face, base_pose = self.means[item["clip_id"]]
        with torch.no_grad():
            item.update(base_face=base_face, base_pose=base_pose,
                        face_motion=face_keypoints(self.face_model, item["coeffs"]) - base_face,
                        pose_motion=head_pose(item["coeffs"]) - base_pose)
        return item
