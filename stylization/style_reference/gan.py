"""The adversarial part of the method's image generators: a multi-scale PatchGAN and LSGAN losses.

The paper trains its image generators (the Style Mapping's Intermediate Generator, §5.2, and the
Style-Aware Generator) with "LSGAN loss [Mao et al.]". The discriminator is pix2pixHD's
multi-scale PatchGAN (as face-vid2vid's): the same PatchGAN applied to the image and to ``scales - 1``
successive 2x average-pooled copies, each returning a map of per-patch scores. The losses take the
list of maps, so any discriminator that returns a list of maps can use them. Pure ``nn.Module`` s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """One PatchGAN: ``layers`` stride-2 4x4 convolutions (LeakyReLU 0.2; instance norm after all but
    the first), a stride-1 4x4 convolution, then a 4x4 convolution to one score per patch.

    Args:
        in_channels: image channels.
        base_channels: channels of the first convolution, doubled per layer up to ``max_channels``.
        max_channels: channel cap.
        layers: stride-2 convolutions (the map is about 1/2**layers of the image).
    """

    def __init__(self, *, in_channels: int, base_channels: int, max_channels: int, layers: int):
        super().__init__()
        if layers < 1:
            raise ValueError(f"a PatchGAN needs at least one stride-2 layer, got layers={layers}")
        blocks, c_in = [], in_channels
        for i in range(layers + 1):
            c_out = min(max_channels, base_channels * 2 ** i)
            stride = 2 if i < layers else 1
            blocks.append(nn.Conv2d(c_in, c_out, 4, stride, 1))
            if i > 0:
                blocks.append(nn.InstanceNorm2d(c_out, affine=True))
            blocks.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        blocks.append(nn.Conv2d(c_in, 1, 4, 1, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, C, H, W] -> scores [B, 1, h, w] (unbounded; LSGAN's targets are 1 real, 0 fake)."""
        return self.net(image)


class MultiScalePatchDiscriminator(nn.Module):
    """``scales`` PatchGANs (not sharing weights), the s-th seeing the image average-pooled s times
    (3x3 window, stride 2, as pix2pixHD).

    Args: ``scales`` and the :class:`PatchDiscriminator` arguments (the same for every scale).
    """

    def __init__(self, *, scales: int, in_channels: int, base_channels: int, max_channels: int, layers: int):
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be >= 1, got {scales}")
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(in_channels=in_channels, base_channels=base_channels, max_channels=max_channels,
                               layers=layers) for _ in range(scales))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image [B, C, H, W] (any fixed range; the stage's is [0, 1]) -> one score map [B, 1, h_s, w_s]
        per scale, finest first."""
        maps = []
        for i, d in enumerate(self.discriminators):
            if i:
                image = F.avg_pool2d(image, 3, stride=2, padding=1, count_include_pad=False)
            maps.append(d(image))
        return maps


def lsgan_d_loss(real_preds: list[torch.Tensor], fake_preds: list[torch.Tensor]) -> torch.Tensor:
    """The discriminator's least-squares loss, averaged over the maps: mean (D(real) - 1)^2 + mean D(fake)^2
    (Mao et al.'s a = 0, b = c = 1 coding, without its factor 1/2). Lists of maps [B, 1, h, w] -> scalar."""
    if len(real_preds) != len(fake_preds) or not real_preds:
        raise ValueError(f"need as many real as fake maps (>= 1), got {len(real_preds)} and {len(fake_preds)}")
    terms = [(r.float() - 1).pow(2).mean() + f.float().pow(2).mean() for r, f in zip(real_preds, fake_preds)]
    return torch.stack(terms).mean()


def lsgan_g_loss(fake_preds: list[torch.Tensor]) -> torch.Tensor:
    """The generator's least-squares loss, averaged over the maps: mean (D(fake) - 1)^2. List of maps -> scalar."""
    if not fake_preds:
        raise ValueError("need at least one map")
    return torch.stack([(f.float() - 1).pow(2).mean() for f in fake_preds]).mean()
