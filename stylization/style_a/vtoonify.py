"""VToonify-D: a content encoder fused into a frozen DualStyleGAN, frame in -> stylised frame out.

Layout (``generator.*``, ``encoder.*``, ``fusion_out.*``, ``fusion_skip.*``, ``res.*``) matches
VToonify's ``vtoonify_s_d.pt`` ``g_ema`` so it loads strictly.

* ``encoder``: [0] a stem on the 22-channel input (RGB + 19 BiSeNet logits / 16) to the
  generator's width at ``in_size``; [1..] stride-2 blocks down to 32×32; then 6 residual
  blocks at 32×32, each followed by a dilated ModRes block (``res[1..6]``, dilations
  4, 4, 2, 2, 1, 1) driven by T_s of the art code with weight d_s (the style degree); the last
  entry is a 1×1 conv giving the RGB skip at 32×32. ``res[0]`` exists in the file but is unused.
* ``fusion_out[k]``/``fusion_skip[k]`` at 32, 64, 128, 256 (k = 0..3): the generator feature f_G and
  the encoder feature f_E meet through a mask m = tanh(relu(conv(AdaIN([f_G, |f_G - f_E|], MLP(d_s)))))
  and out = conv([f_G, m · f_E]); skip = conv([skip, m · f_E]). With ``in_size == out_size`` (not a
  VToonify layout; the CPU-sized model) the top encoder feature is fused after the last upsampling
  convolution, into ``out`` only (:meth:`VToonifyD.top_fusion`).
* The generator runs its layers from 32×32 upwards (``convs[6:]``, ``to_rgbs[3:]``) with zero
  noise; latent layers 7..17 are the art code through DualStyleGAN's colour transforms.

Output: [B, 3, 4H, 4W] for a [B, 22, H, W] input (256 -> 1024), plus the masks on request.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylization.constants import PARSING_CLASSES
from stylization.style_a.dualstylegan import AdaptiveInstanceNorm, AdaResBlock, DualStyleGAN


class EncoderResBlock(nn.Module):
    """Two 3×3 convs with LeakyReLU(0.2), added to the input and scaled by 1/sqrt(2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x):
        out = F.leaky_relu(self.conv2(F.leaky_relu(self.conv(x), 0.2)), 0.2)
        return (out + x) / math.sqrt(2)


class Fusion(nn.Module):
    """Fuses the generator feature with the encoder feature through a degree-conditioned mask."""

    def __init__(self, channels: int, degree_dim: int = 128):
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, channels, 3, 1, 1)
        self.norm = AdaptiveInstanceNorm(2 * channels, degree_dim)
        self.conv2 = nn.Conv2d(2 * channels, 1, 3, 1, 1)
        self.linear = nn.Sequential(nn.Linear(1, 64), nn.LeakyReLU(0.2), nn.Linear(64, degree_dim), nn.LeakyReLU(0.2))

    def forward(self, f_gen, f_enc, degree: float):
        label = self.linear(f_gen.new_full((f_gen.shape[0], 1), float(degree)))
        mask = torch.tanh(F.relu(self.conv2(self.norm(torch.cat([f_gen, (f_gen - f_enc).abs()], 1), label))))
        return self.conv(torch.cat([f_gen, f_enc * mask], 1)), mask


class VToonifyD(nn.Module):
    """Args: in_size (256), out_size (1024), style_dim, n_mlp, channel_multiplier as DualStyleGAN;
    ``num_res_layers`` (6) residual blocks at 32×32; ``channel_cap`` for small test models."""

    def __init__(self, in_size: int = 256, out_size: int = 1024, style_dim: int = 512, n_mlp: int = 8,
                 channel_multiplier: int = 2, num_res_layers: int = 6, channel_cap: int = 512):
        super().__init__()
        if in_size < 32 or in_size & (in_size - 1):
            raise ValueError(f"in_size must be a power of two >= 32, got {in_size}")
        self.generator = DualStyleGAN(out_size, style_dim, n_mlp, channel_multiplier, channel_cap=channel_cap)
        ch = self.generator.generator.channels
        self.in_size = in_size
        stages = [2 ** i for i in range(int(math.log2(in_size)), 4, -1)]  # in_size .. 32
        self.encoder = nn.ModuleList([nn.Sequential(
            nn.Conv2d(3 + PARSING_CLASSES, 32, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(32, ch[in_size], 3, 1, 1), nn.LeakyReLU(0.2))])
        for res in stages[:-1]:
            self.encoder.append(nn.Sequential(
                nn.Conv2d(ch[res], ch[res // 2], 3, 2, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(ch[res // 2], ch[res // 2], 3, 1, 1), nn.LeakyReLU(0.2)))
        self.encoder.append(nn.Sequential(*[EncoderResBlock(ch[32]) for _ in range(num_res_layers)]))
        self.encoder.append(nn.Conv2d(ch[32], 3, 1, 1, 0))
        self.fusion_out = nn.ModuleList(Fusion(ch[res]) for res in stages[::-1])
        self.fusion_skip = nn.ModuleList(nn.Conv2d(ch[res] + 3, 3, 3, 1, 1) for res in stages[::-1])
        self.res = nn.ModuleList([AdaResBlock(ch[4], style_dim)])
        for i in range(3, 6):
            self.res.append(AdaResBlock(ch[2 ** i], style_dim, dilation=2 ** (5 - i)))
            self.res.append(AdaResBlock(ch[2 ** i], style_dim, dilation=2 ** (5 - i)))

    def style_codes(self, style: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """W+ [B, 18, 512] (or [B, 512]) -> (T_s structure codes [B, 18, 512], per-layer latents)."""
        dsg = self.generator
        style = style if style.ndim == 3 else style[:, None].expand(-1, dsg.n_latent, -1)
        structure = dsg.style(style.reshape(-1, style.shape[-1])).reshape(style.shape)
        # DualStyleGAN's res[j] up to res_index are ModRes blocks on features, not latent transforms:
        # those layers keep the W+ code; the layers above pass it through the colour transform T_c.
        return structure, [style[:, j] if j <= dsg.res_index else dsg.res[j](style[:, j]) for j in range(dsg.n_latent)]

    def encode(self, x: torch.Tensor, structure: torch.Tensor, degree: float):
        """Content encoder: x [B, 22, H, W] -> (features from 32×32 up to H, 32×32 feature, RGB skip)."""
        feats, feat = [], x
        for block in self.encoder[:-2]:
            feat = block(feat)
            feats.append(feat)
        for j, block in enumerate(self.encoder[-2]):
            feat = self.res[j + 1](block(feat), structure[:, j + 1], degree)
        return feats[::-1], feat, self.encoder[-1](feat)

    def top_fusion(self) -> int | None:
        """Index of the fusion that meets the generator at the output size itself (only when
        ``in_size == out_size``: VToonify's 4× upscaling never has one), else None. It fuses into the
        feature after the last upsampling convolution; its ``fusion_skip`` is unused."""
        stages = int(math.log2(self.generator.generator.size)) - 5  # generator stages from 32×32 up
        return stages if len(self.fusion_out) > stages else None

    def synthesize(self, feats, out, skip, codes, degree: float, fuse_levels: int | None = None, edit=None):
        """The generator from 32×32 up, fusing ``feats`` at the first ``fuse_levels`` stages (all by
        default). ``edit(k, out, skip) -> (out, skip)``, when given, edits the feature of stage k
        (64 · 2^k px) right after its upsampling convolution (and the top fusion, where there is
        one). Returns (image, masks)."""
        g = self.generator.generator
        levels = len(feats) if fuse_levels is None else min(int(fuse_levels), len(feats))
        top = self.top_fusion()
        masks = []
        for k, (conv_up, conv, to_rgb) in enumerate(zip(g.convs[6::2], g.convs[7::2], g.to_rgbs[3:])):
            if k < levels:  # a content feature exists at this resolution
                out, mask = self.fusion_out[k](out, feats[k], degree)
                skip = self.fusion_skip[k](torch.cat([skip, feats[k] * mask], 1))
                masks.append(mask)
            b, _, h, w = out.shape
            zero = out.new_zeros(b, 1, 2 * h, 2 * w)  # VToonify removes the noise input
            out = conv_up(out, codes[2 * k + 7], zero)
            if k + 1 == top and top < levels:  # a content feature at the output size (in_size == out_size)
                out, mask = self.fusion_out[top](out, feats[top], degree)
                masks.append(mask)
            if edit is not None:
                out, skip = edit(k, out, skip)
            out = conv(out, codes[2 * k + 8], zero)
            skip = to_rgb(out, codes[2 * k + 9], skip)
        return skip, masks

    def forward(self, x: torch.Tensor, style: torch.Tensor, degree: float = 0.5, return_masks: bool = False):
        """x [B, 22, H, W] (RGB in [-1, 1] + parsing logits / 16), style W+ [B, 18, 512] (or [B, 512]),
        degree d_s in [0, 1] -> image [B, 3, 4H, 4W] (and the fusion masks)."""
        structure, codes = self.style_codes(style)
        feats, out, skip = self.encode(x, structure, degree)
        image, masks = self.synthesize(feats, out, skip, codes, degree)
        return (image, masks) if return_masks else image
