"""Image similarity: SSIM, PSNR, in two definitions.

* ``"skimage"`` — :func:`ssim`, :func:`psnr` on float images [B, 3, H, W] in [0, 1] (the training
  logs use these). SSIM is Wang et al.'s with an 11×11 Gaussian window (sigma 1.5), K1 = 0.01,
  K2 = 0.03, data range 1, computed per channel on the valid region and averaged, in float64 — the
  same numbers as ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=...)``. PSNR adds 1e-10 to the MSE, so
  identical images give 100 dB where scikit-image gives inf.
* ``"vico"`` — :func:`ssim_vico`, :func:`psnr_vico`: the ``piq`` package as the ViCo challenge
  baseline calls it (``piq.ssim(x, y, data_range=1.)``, ``piq.psnr(x, y, data_range=1.)``), in
  float32. Its SSIM has the same window and constants but first average-pools an image whose shorter
  side is ``s`` by ``f = max(1, round(s / 256))``: the two definitions agree (to float32 rounding) up
  to 383 px and differ above, e.g. at HDTF's 512 px. Its PSNR adds 1e-8 to the MSE: identical images
  give 80 dB.

:func:`ssim_frames` and :func:`psnr_frames` are the benchmark's entry points: RGB uint8 frames
[T, H, W, 3] of two videos in, one value per frame pair out, ViCo's definition by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_1d(size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """x, y [B, C, H, W] in [0, 1] -> SSIM [B] (computed in float64)."""
    x, y = x.double(), y.double()
    c = x.shape[1]
    g = _gaussian_1d(window, sigma, device=x.device)
    rows, cols = g.view(1, 1, window, 1).expand(c, 1, window, 1), g.view(1, 1, 1, window).expand(c, 1, 1, window)
    # The 2-D Gaussian is separable: two 1-D passes (valid region only) instead of one 11×11 pass,
    # ~5× fewer operations, which matters in float64 on the CPU (no oneDNN path) at 512 px.
    blur = lambda t: F.conv2d(F.conv2d(t, rows, groups=c), cols, groups=c)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def psnr(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """x, y [B, C, H, W] in [0, 1] -> PSNR in dB [B]."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / (mse + eps))).float()


DEFINITIONS = ("vico", "skimage")
# Frames per piq / conv2d call: bounds memory (a 512 px frame costs ~50 MB of float32 maps).
CHUNK_FRAMES = 32


def ssim_vico(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x, y [B, C, H, W] in [0, 1] -> SSIM [B] as the ViCo baseline computes it (piq, float32)."""
    import piq  # here, not at the top: the training stages import this module and need no piq

    return piq.ssim(x.float(), y.float(), data_range=1.0, reduction="none")


def psnr_vico(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x, y [B, C, H, W] in [0, 1] -> PSNR in dB [B] as the ViCo baseline computes it (piq, float32;
    80 dB for identical images)."""
    import piq

    return piq.psnr(x.float(), y.float(), data_range=1.0, reduction="none")


def _frame_pairs(generated, ground_truth) -> tuple[torch.Tensor, torch.Tensor]:
    """Two uint8 videos [T, H, W, 3] (numpy or torch) -> the same as uint8 tensors, checked."""
    pair = []
    for name, frames in (("generated", generated), ("ground_truth", ground_truth)):
        frames = torch.as_tensor(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"{name} must be RGB uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
        pair.append(frames)
    if len(pair[1]) == 0:
        raise ValueError("ground_truth has no frames")
    if pair[0].shape != pair[1].shape:
        raise ValueError(f"generated and ground_truth frames differ in shape: {list(pair[0].shape)} vs "
                         f"{list(pair[1].shape)}; resize or trim them to match first")
    return pair[0], pair[1]


def _per_frame(metric, generated, ground_truth) -> torch.Tensor:
    fake, real = _frame_pairs(generated, ground_truth)
    to_float = lambda f: f.permute(0, 3, 1, 2).float() / 255.0  # noqa: E731 ([T, 3, H, W] in [0, 1])
    return torch.cat([metric(to_float(fake[i:i + CHUNK_FRAMES]), to_float(real[i:i + CHUNK_FRAMES]))
                      for i in range(0, len(fake), CHUNK_FRAMES)])


def _definition(definition: str, vico, skimage):
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {DEFINITIONS}, got {definition!r}")
    return vico if definition == "vico" else skimage


def ssim_frames(generated, ground_truth, definition: str = "vico") -> torch.Tensor:
    """RGB uint8 frames [T, H, W, 3] (numpy or torch, same shape) -> SSIM of each frame pair [T]
    (float32, no unit, 1 for identical frames), on the full RGB frame.

    ``definition``: ``"vico"`` (piq; the benchmark's) or ``"skimage"`` (see the module docstring).
    """
    return _per_frame(_definition(definition, ssim_vico, ssim), generated, ground_truth)


def psnr_frames(generated, ground_truth, definition: str = "vico") -> torch.Tensor:
    """RGB uint8 frames [T, H, W, 3] (numpy or torch, same shape) -> PSNR of each frame pair in dB [T]
    (float32), on the full RGB frame with peak 1 = 255 levels. Identical frames give a finite cap:
    80 dB for ``"vico"``, 100 dB for ``"skimage"``.
    """
    return _per_frame(_definition(definition, psnr_vico, psnr), generated, ground_truth)
