"""SadTalker-compatible Audio2Exp: per-frame expression from a mel window, the source
expression and a blink value.

Parameter names and shapes match SadTalker's ``SimpleWrapperV2`` (``audio_encoder.<i>.
conv_block.{0,1}``, ``mapping1``), so its released ``auido2exp_00300-model.pth`` loads with
``strict=True`` at the default channel widths. Smaller widths give CPU-sized models.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv2d + BatchNorm + ReLU, with the input added before the ReLU when ``residual``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual: bool = False):
        super().__init__()
        if residual and (cin != cout or stride != 1):
            raise ValueError("a residual block keeps its channel count and resolution")
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return self.act(out + x if self.residual else out)


class Audio2Exp(nn.Module):
    """Mel windows [B, T, 1, 80, 16] + source expression + blink -> expression [B, T, 64].

    Args:
        channels: widths of the five encoder stages; SadTalker uses (32, 64, 128, 256, 512).
        exp_dim: expression coefficients (64 for the BFM).
    """

    def __init__(self, channels: list[int] | tuple[int, ...] = (32, 64, 128, 256, 512), exp_dim: int = 64):
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"channels needs five widths, got {list(channels)}")
        c1, c2, c3, c4, c5 = channels
        # Mel [1, 80, 16] -> [c1, 80, 16] -> [c2, 27, 16] -> [c3, 9, 6] -> [c4, 3, 3] -> [c5, 1, 1]
        self.audio_encoder = nn.Sequential(
            ConvBlock(1, c1, 3, 1, 1), ConvBlock(c1, c1, 3, 1, 1, True), ConvBlock(c1, c1, 3, 1, 1, True),
            ConvBlock(c1, c2, 3, (3, 1), 1), ConvBlock(c2, c2, 3, 1, 1, True), ConvBlock(c2, c2, 3, 1, 1, True),
            ConvBlock(c2, c3, 3, 3, 1), ConvBlock(c3, c3, 3, 1, 1, True), ConvBlock(c3, c3, 3, 1, 1, True),
            ConvBlock(c3, c4, 3, (3, 2), 1), ConvBlock(c4, c4, 3, 1, 1, True),
            ConvBlock(c4, c5, 3, 1, 0), ConvBlock(c5, c5, 1, 1, 0),
        )
        self.mapping1 = nn.Linear(c5 + exp_dim + 1, exp_dim)
        self.exp_dim = exp_dim

    def forward(self, mel: torch.Tensor, source_exp: torch.Tensor, blink: torch.Tensor) -> torch.Tensor:
        """mel [B, T, 1, 80, 16]; source_exp [B, 64] or [B, T, 64]; blink [B, T] in [0, 1]."""
        b, t = mel.shape[:2]
        if mel.shape[2:] != (1, 80, 16):
            raise ValueError(f"mel windows must be [B, T, 1, 80, 16], got {list(mel.shape)}")
        # Channels-last activations (with channels-last weights, see StyleE) suit oneDNN convolutions.
        x = mel.reshape(b * t, 1, 80, 16).contiguous(memory_format=torch.channels_last)
        audio = self.audio_encoder(x).reshape(b, t, -1)
        if source_exp.ndim == 2:
            source_exp = source_exp[:, None].expand(b, t, self.exp_dim)
        # SadTalker adds no residual from the source expression: the mapping sees it as input.
        return self.mapping1(torch.cat([audio, source_exp, blink[..., None].to(audio.dtype)], dim=-1))
