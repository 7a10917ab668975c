"""The refinement network R: a descriptor-driven U-Net that calibrates the warped 64×64 feature.

Style²Talker's R follows StyleHEAT's calibration network. On the generator's 64×64 feature
[B, C, 64, 64] and the motion descriptor [B, 256] it returns an SFT pair (scale, shift), both
[B, C, 64, 64], and the generator applies ``warped · (1 + scale) + shift``. That removes the
ghosting between the warped feature and the unwarped content-encoder skips.

Layout (the names of StyleHEAT's ``calibrator.*``, so its weights load through the rename map
in :mod:`stylization.style_a.style_a`):

* ``conv_body_first``: a 1×1 ConvLayer from C to ``width``;
* ``conv_body_down[i]``: StyleGAN2 ResBlocks halving the size down to 4×4; ``final_conv``: 3×3;
* ``linear_3dmm``: Linear, LeakyReLU(0.1), Linear on the descriptor;
* per level up to ``size`` (8, 16, ..., size): the U-Net skip is added, ``conv_body_up[i]`` (a
  residual bilinear ×2 block) upsamples, ``inject_3dmm[i]`` (two 3×3 convs, each normalised by a
  descriptor AdaIN) injects the motion;
* ``sft_scale`` / ``sft_shift`` at the top level: EqualConv2d, scaled LeakyReLU, EqualConv2d
  to C channels. StyleHEAT computes such a pair at every level but its generator only ever
  applies the top one; the unused lower heads are not built here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylization.style_a.motion import DescriptorAdaIN
from stylization.style_a.stylegan2 import ConvLayer, EqualConv2d, FusedLeakyReLU, ResBlock


class ScaledLeakyReLU(nn.Module):
    def forward(self, x):
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


class BilinearUpConv(nn.Module):
    """Bilinear ×2 upsampling, then an equalised-lr conv; with ``activate`` a biased fused LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.activation = FusedLeakyReLU(out_ch) if activate else None
        self.scale, self.padding = 1 / math.sqrt(in_ch * kernel ** 2), kernel // 2

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x, self.weight * self.scale, padding=self.padding)
        return x if self.activation is None else self.activation(x)


class ResUpBlock(nn.Module):
    """(3×3 ConvLayer, bilinear-up 3×3 conv) + bilinear-up 1×1 shortcut, scaled by 1/sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = BilinearUpConv(in_ch, out_ch, 3)
        self.skip = BilinearUpConv(in_ch, out_ch, 1, activate=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class AdaINResBlock(nn.Module):
    """x1 = LeakyReLU(AdaIN(conv1(x), d)); out = x1 + AdaIN(conv2(x1), d)."""

    def __init__(self, channels: int, descriptor_nc: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm1 = DescriptorAdaIN(channels, descriptor_nc)
        self.norm2 = DescriptorAdaIN(channels, descriptor_nc)

    def forward(self, x, d):
        x = F.leaky_relu(self.norm1(self.conv1(x), d), 0.01)
        return x + self.norm2(self.conv2(x), d)


def sft_head(width: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(EqualConv2d(width, width, 3, 1, 1), ScaledLeakyReLU(), EqualConv2d(width, out_ch, 3, 1, 1))


class Refinement(nn.Module):
    """Feature [B, in_channels, size, size] + descriptor [B, descriptor_nc] -> (scale, shift) [B, in_channels, size, size].

    Args: ``in_channels`` (the generator's channels at 64×64: 512 at paper size), ``size`` (64),
    ``width`` (256: StyleHEAT's U-Net width at every level), ``descriptor_nc`` (256).
    """

    def __init__(self, in_channels: int = 512, size: int = 64, width: int = 256, descriptor_nc: int = 256):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"refinement size must be a power of two >= 8, got {size}")
        levels = int(math.log2(size)) - 2  # size -> 4 and back
        self.size = size
        self.conv_body_first = ConvLayer(in_channels, width, 1)
        self.conv_body_down = nn.ModuleList(ResBlock(width, width) for _ in range(levels))
        self.final_conv = ConvLayer(width, width, 3)
        self.conv_body_up = nn.ModuleList(ResUpBlock(width, width) for _ in range(levels))
        self.linear_3dmm = nn.Sequential(nn.Linear(descriptor_nc, descriptor_nc), nn.LeakyReLU(0.1),
                                         nn.Linear(descriptor_nc, descriptor_nc))
        self.inject_3dmm = nn.ModuleList(AdaINResBlock(width, descriptor_nc) for _ in range(levels))
        self.sft_scale = sft_head(width, in_channels)
        self.sft_shift = sft_head(width, in_channels)

    def forward(self, feature: torch.Tensor, descriptor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if feature.shape[-1] != self.size:
            raise ValueError(f"refinement expects {self.size}×{self.size} features, got {tuple(feature.shape[-2:])}")
        feat = self.conv_body_first(feature)
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.append(feat)
        feat = self.final_conv(feat)
        d = self.linear_3dmm(descriptor.flatten(1))
        for up, inject, skip in zip(self.conv_body_up, self.inject_3dmm, reversed(skips)):
            feat = inject(up(feat + skip), d)
        return self.sft_scale(feat), self.sft_shift(feat)
