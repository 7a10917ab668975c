"""pSp: the GradualStyleEncoder (IR-SE50 + feature pyramid) that maps a face to 18 style codes.

Layout (``encoder.*``, ``decoder.*``) matches the ``state_dict`` of DualStyleGAN / VToonify's
``encoder.pt`` (``{'state_dict', 'latent_avg', 'opts'}``); ``latent_avg`` is a buffer (the
loader fills it from the file's ``latent_avg`` entry) always added to the encoder output.

Encoder: a 3×3 input stem (64 ch, BN, PReLU), 24 IR-SE bottleneck units in blocks of
[3, 4, 14, 3] at 64/128/256/512 channels (the first unit of each block has stride 2), taps
c1 (after unit 6), c2 (unit 20), c3 (unit 23); p2 = up(c3) + latlayer1(c2), p1 = up(p2) +
latlayer2(c1) (bilinear, align_corners=True); style blocks 0-2 read c3, 3-6 read p2, 7-17
read p1, each a stack of stride-2 3×3 convolutions with LeakyReLU(0.01) down to 1×1 and an
EqualLinear. Input: an FFHQ-aligned face, RGB in [-1, 1], 256×256.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylization.style_a.stylegan2 import EqualLinear, Generator

IR50_BLOCKS = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))  # (in, depth, units)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x):
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """BN, 3×3 conv, PReLU, 3×3 conv (stride), BN, squeeze-excite; plus a shortcut."""

    def __init__(self, in_ch: int, depth: int, stride: int):
        super().__init__()
        if in_ch == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_ch, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth), SqueezeExcite(depth))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """[B, C, S, S] -> [B, C]: log2(S) stride-2 convolutions, then an EqualLinear."""

    def __init__(self, channels: int, spatial: int):
        super().__init__()
        layers = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)

    def forward(self, x):
        return self.linear(self.convs(x).flatten(1))


class GradualStyleEncoder(nn.Module):
    """Aligned face [B, 3, S, S] in [-1, 1] -> codes [B, n_styles, style_dim] (before latent_avg).

    ``blocks`` lists (in, depth, units) per IR-SE block (IR-SE50 by default; the last depth must
    equal ``style_dim``); smaller tuples give CPU-sized encoders of the same design.
    """

    def __init__(self, n_styles: int = 18, input_size: int = 256, blocks=IR50_BLOCKS, style_dim: int = 512):
        super().__init__()
        blocks = [tuple(int(v) for v in b) for b in blocks]
        if len(blocks) != 4 or blocks[-1][1] != style_dim:
            raise ValueError(f"need 4 IR-SE blocks whose last depth is style_dim={style_dim}, got {blocks}")
        stem = blocks[0][0]
        self.input_layer = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem))
        units = []
        for in_ch, depth, n in blocks:
            units.append(BottleneckIRSE(in_ch, depth, 2))
            units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)
        ends = [sum(b[2] for b in blocks[:i + 1]) - 1 for i in range(4)]
        self.taps = (ends[1], ends[2], ends[3])  # c1, c2, c3: the ends of blocks 2, 3, 4
        c3, p2, p1 = input_size // 16, input_size // 8, input_size // 4  # spatial sizes of the taps
        self.coarse, self.middle = 3, 7
        self.styles = nn.ModuleList(GradualStyleBlock(style_dim, c3 if i < self.coarse else p2 if i < self.middle else p1)
                                    for i in range(n_styles))
        self.latlayer1 = nn.Conv2d(blocks[2][1], style_dim, 1)
        self.latlayer2 = nn.Conv2d(blocks[1][1], style_dim, 1)

    @staticmethod
    def _up_add(x, y):
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x):
        x = self.input_layer(x)
        taps = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                taps[i] = x
        c1, c2, c3 = (taps[i] for i in self.taps)
        p2 = self._up_add(c3, self.latlayer1(c2))
        p1 = self._up_add(p2, self.latlayer2(c1))
        sources = [c3 if i < self.coarse else p2 if i < self.middle else p1 for i in range(len(self.styles))]
        return torch.stack([block(src) for block, src in zip(self.styles, sources)], dim=1)


class PSP(nn.Module):
    """pSp = GradualStyleEncoder + StyleGAN2 decoder; codes = encoder(x) + latent_avg.

    ``z_plus`` (DualStyleGAN / VToonify's encoder): the codes are Z+ and :meth:`encode` maps
    each row through the decoder's mapping network to W+. ``decoder=False`` builds the encoder
    alone (W+ codes; the CPU-sized Style-A configuration trains it from scratch);
    ``encoder_blocks``, ``style_dim`` and ``input_size`` size it.
    """

    def __init__(self, output_size: int = 1024, z_plus: bool = True, decoder: bool = True,
                 encoder_blocks=IR50_BLOCKS, style_dim: int = 512, input_size: int = 256):
        super().__init__()
        if z_plus and not decoder:
            raise ValueError("Z+ codes need the decoder's mapping network: use decoder=True or z_plus=False")
        n_styles = 2 * int(math.log2(output_size)) - 2
        self.encoder = GradualStyleEncoder(n_styles, input_size, encoder_blocks, style_dim)
        self.decoder = Generator(output_size, style_dim, 8, channel_multiplier=2) if decoder else None
        self.register_buffer("latent_avg", torch.zeros(n_styles, style_dim))
        self.z_plus, self.input_size, self.style_dim = z_plus, input_size, style_dim

    def encode(self, face: torch.Tensor, to_w_plus: bool = True) -> torch.Tensor:
        """Aligned face [B, 3, S, S] -> [B, n_styles, style_dim] (W+, or Z+ with to_w_plus=False)."""
        size = self.input_size
        if face.shape[-2:] != (size, size):
            face = F.adaptive_avg_pool2d(face, (size, size))
        codes = self.encoder(face) + self.latent_avg.reshape(1, -1, self.style_dim)
        return self.decoder.map_codes(codes) if (self.z_plus and to_w_plus) else codes

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        """Reconstruction: face -> W+ -> decoder image [B, 3, size, size]."""
        if self.decoder is None:
            raise TypeError("this pSp was built without its decoder")
        return self.decoder(self.encode(face), input_is_latent=True)[0]
