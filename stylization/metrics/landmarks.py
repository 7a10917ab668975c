"""Landmark distances: M-LMD (mouth) and F-LMD (full face).

Both are the mean Euclidean distance, in pixels, between corresponding 68-point landmarks
of generated and ground-truth frames; M-LMD uses the 20 mouth points (48-67).
"""

from __future__ import annotations

import torch

from stylization.data.face_model import MOUTH


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
