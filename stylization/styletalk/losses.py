"""Losses of the style encoders, shared by StyleTalk's and SAAS's stages. Pure tensor functions.

* :func:`sequence_ssim` — SSIM along time of expression sequences (StyleTalk's reconstruction loss
  uses 1 − SSIM; equal to scikit-image's ``structural_similarity`` with Gaussian weights, σ 1.5, on
  each channel's valid positions, ``tests/test_styletalk_stage.py``);
* :func:`triplet_loss` — the paper's triplet on style codes (StyleTalk Eq. 7, SAAS's margin 5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sequence_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM along time of sequences [B, L, C] (each channel its own signal), Gaussian-weighted
    local statistics over ``window`` frames (valid positions only), C1 = (0.01 R)², C2 = (0.03 R)²."""
    t = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).view(1, 1, -1)
    b, n, c = x.shape
    xs, ys = x.transpose(1, 2).reshape(b * c, 1, n), y.transpose(1, 2).reshape(b * c, 1, n)

    def blur(v):
        return F.conv1d(v, g)

    mx, my = blur(xs), blur(ys)
    vx, vy, cov = blur(xs * xs) - mx ** 2, blur(ys * ys) - my ** 2, blur(xs * ys) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return (((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean()


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """max(|a − p| − |a − n| + margin, 0), Euclidean distances of codes [B, D], batch mean (paper Eq. 7)."""
    return F.relu((anchor - positive).norm(dim=-1) - (anchor - negative).norm(dim=-1) + margin).mean()
