"""Image similarity: SSIM, PSNR (images [B, 3, H, W] in [0, 1]; one value per image).

SSIM is Wang et al.'s with an 11×11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data
range 1, computed per channel on the valid region and averaged — the same numbers as
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1, channel_axis=...)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """x, y [B, C, H, W] in [0, 1] -> SSIM [B] (computed in float64)."""
    x, y = x.double(), y.double()
    c = x.shape[1]
    kernel = _gaussian_window(window, sigma, device=x.device).expand(c, 1, window, window)
    blur = lambda t: F.conv2d(t, kernel, groups=c)  # noqa: E731 (valid region only)
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def psnr(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """x, y [B, C, H, W] in [0, 1] -> PSNR in dB [B]."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / (mse + eps))).float()
