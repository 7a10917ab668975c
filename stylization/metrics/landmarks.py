"""Landmark distances: M-LMD (mouth, the 20 points 48-67) and F-LMD (all 68 points), in pixels.

Two definitions live here, for two uses:

* :func:`landmark_distance`, :func:`m_lmd`, :func:`f_lmd`, :func:`expression_landmark_errors` —
  the training logs': the mean *Euclidean* distance between corresponding points of landmark
  tensors (Chen et al. 2018's LMD).
* :func:`lmd_frames` (videos and a detector) and :func:`coordinate_lmd` (detected landmarks) — the
  benchmark's, as the ViCo baseline defines LMD: the mean *absolute per-coordinate* difference
  (|dx| and |dy| averaged, i.e. half the L1 distance per point), over the frames where the ground
  truth has a face, with both videos resized to a stated frame size first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import cv2
import numpy as np
import torch

from stylization.constants import COEFF_SLICES, FACE_CROP_SIZE, MOUTH

# RGB uint8 frames [T, S, S, 3] -> landmarks [T, 68, 2] in pixels of those frames, NaN rows where no face.
Detector = Callable[[np.ndarray], np.ndarray]


def landmark_distance(pred: torch.Tensor, target: torch.Tensor, points=None) -> torch.Tensor:
    """Mean distance over frames and points; [..., 68, 2] each; ``points`` selects a subset."""
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {list(pred.shape)} vs {list(target.shape)}")
    if points is not None:
        pred, target = pred[..., list(points), :], target[..., list(points), :]
    return (pred - target).norm(dim=-1).mean()


def m_lmd(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return landmark_distance(pred, target, MOUTH)


def f_lmd(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return landmark_distance(pred, target)


def expression_landmark_errors(face_model, coeffs: torch.Tensor, exp_pred: torch.Tensor,
                               image_size: float = float(FACE_CROP_SIZE)) -> dict[str, torch.Tensor]:
    """M-LMD and F-LMD of a predicted expression against the true one, in pixels of an image_size frame.

    ``coeffs`` [..., 260] supply identity, pose and the true expression; ``exp_pred`` [..., 64]
    replaces the expression. Pose comes from the ground truth, so only the expression is judged.
    """
    face_model = face_model.to(coeffs.device)
    pred = coeffs.clone()
    pred[..., COEFF_SLICES["exp"]] = exp_pred.to(coeffs.dtype)
    lm_pred = face_model.landmarks_from_coeffs(pred, image_size)
    lm_true = face_model.landmarks_from_coeffs(coeffs, image_size)
    return {"m_lmd": m_lmd(lm_pred, lm_true), "f_lmd": f_lmd(lm_pred, lm_true)}


class LmdResult(NamedTuple):
    m_lmd: float        # px at the stated frame size; NaN when no frame is used
    f_lmd: float        # px at the stated frame size; NaN when no frame is used
    frames_used: int    # frames where both the ground truth and the generated frame have landmarks
    frames_missed: int  # frames where the ground truth has landmarks and the generated frame has none


def coordinate_lmd(generated, ground_truth) -> LmdResult:
    """M-LMD and F-LMD of detected landmarks, generated and ground_truth [T, 68, 2] (pixels, numpy or
    torch; a frame without a face is a row of NaN).

    A frame counts when the ground truth has landmarks. Where the generated frame then has none it
    is left out and counted in ``frames_missed`` (our choice: the definition does not say; the count
    keeps such failures visible instead of scoring them with an arbitrary distance).
    """
    gen = torch.as_tensor(generated).to(torch.float64)
    gt = torch.as_tensor(ground_truth).to(gen)
    if gen.shape != gt.shape or gen.ndim != 3 or gen.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be generated and ground_truth [T, 68, 2] of one shape, got "
                         f"{list(gen.shape)} and {list(gt.shape)}")
    gt_face = torch.isfinite(gt).all(-1).all(-1)
    gen_face = torch.isfinite(gen).all(-1).all(-1)
    used = gt_face & gen_face
    missed = int((gt_face & ~gen_face).sum())
    if not used.any():
        return LmdResult(float("nan"), float("nan"), 0, missed)
    difference = (gen[used] - gt[used]).abs()  # [N, 68, 2]
    return LmdResult(float(difference[:, list(MOUTH)].mean()), float(difference.mean()), int(used.sum()), missed)


def _resized(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [T, H, W, 3] -> [T, size, size, 3]; area averaging when shrinking, bilinear when enlarging."""
    if frames.shape[1:3] == (size, size):
        return frames
    shrink = frames.shape[1] >= size and frames.shape[2] >= size
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in frames])


def lmd_frames(generated, ground_truth, detector: Detector, size: int | None = FACE_CROP_SIZE) -> LmdResult:
    """M-LMD and F-LMD of a generated video against its ground truth.

    Args:
        generated, ground_truth: RGB uint8 frames [T, H, W, 3] (numpy or torch); the two may differ
            in H, W when ``size`` is set.
        detector: frames [T, size, size, 3] -> landmarks [T, 68, 2] in pixels of those frames, NaN
            where no face (e.g. a wrapper around :class:`stylization.preprocess.faces.LandmarkDetector`;
            dlib's 68 points by default, face-alignment's FAN to match the ViCo numbers).
        size: both videos are resized to size × size before detection, so the distances are pixels
            of that frame (256 by default: FACE_CROP_SIZE, our corpus frame); non-square frames are
            stretched. None keeps the frames as they are (then they must have one shape).

    Returns: :class:`LmdResult` (see :func:`coordinate_lmd` for which frames count).
    """
    videos = []
    for name, frames in (("generated", generated), ("ground_truth", ground_truth)):
        frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"{name} must be RGB uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
        if len(frames) == 0:
            raise ValueError(f"{name} has no frames")
        videos.append(frames if size is None else _resized(frames, size))
    gen, gt = videos
    if len(gen) != len(gt):
        raise ValueError(f"generated has {len(gen)} frames and ground_truth {len(gt)}; trim them to one length first")
    if gen.shape != gt.shape:
        raise ValueError(f"with size=None the frames must match: {list(gen.shape)} vs {list(gt.shape)}")
    return coordinate_lmd(detector(gen), detector(gt))
