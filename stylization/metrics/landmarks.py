"""Landmark distances: M-LMD (mouth) and F-LMD (full face).

Both are the mean Euclidean distance, in pixels, between corresponding 68-point landmarks
of generated and ground-truth frames; M-LMD uses the 20 mouth points (48-67).
"""

from __future__ import annotations

import torch

from stylization.constants import COEFF_SLICES, FACE_CROP_SIZE, MOUTH


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
