"""The coefficient-driven motion generator: a 73×27 coefficient window -> a 2×64×64 flow field.

Parameter names follow PIRenderer's ``FaceGenerator`` (``mapping_net.*``, ``warpping_net.*`` —
upstream's spelling), the layout StyleHEAT and StyleTalk's renderer reuse, so those weights load
strictly (the editing net is not part of this module).

* :class:`MappingNet` — Conv1d(73 -> 256, k7), then ``layers`` residual blocks of LeakyReLU(0.1)
  + Conv1d(k3, dilation 3) whose skip is cropped by 3 frames per side (27 -> 21 -> 15 -> 9 -> 3),
  then the mean over time: a 256-d motion descriptor.
* :class:`WarpingNet` — an hourglass on the source image whose every block is normalised by
  descriptor-driven AdaIN (InstanceNorm · (1 + gamma) + beta); 5 encoder and 3 decoder levels
  with skips give 256 channels at 1/4 resolution, and LayerNorm, LeakyReLU and a 7×7 conv give
  the flow in pixels (x, y) at that resolution.
* :func:`warp` — resamples any image or feature map with a flow (see its note on alignment).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylization.constants import SEMANTIC_DIM


class MappingNet(nn.Module):
    """Coefficient windows [B, 73, 27] -> motion descriptors [B, 256]."""

    def __init__(self, coeff_nc: int = SEMANTIC_DIM, descriptor_nc: int = 256, layers: int = 3):
        super().__init__()
        self.first = nn.Sequential(nn.Conv1d(coeff_nc, descriptor_nc, kernel_size=7))
        self.layers = layers
        for i in range(layers):
            setattr(self, f"encoder{i}", nn.Sequential(nn.LeakyReLU(0.1),
                                                       nn.Conv1d(descriptor_nc, descriptor_nc, 3, dilation=3)))

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        out = self.first(window)
        for i in range(self.layers):
            out = getattr(self, f"encoder{i}")(out) + out[:, :, 3:-3]
        return out.mean(dim=2)


class DescriptorAdaIN(nn.Module):
    """InstanceNorm(x) · (1 + gamma(d)) + beta(d), gamma and beta from a shared 128-unit MLP."""

    def __init__(self, channels: int, descriptor_nc: int, hidden: int = 128):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Linear(descriptor_nc, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def forward(self, x, descriptor):
        h = self.mlp_shared(descriptor.flatten(1))
        return self.norm(x) * (1 + self.mlp_gamma(h)[:, :, None, None]) + self.mlp_beta(h)[:, :, None, None]


class DownBlock(nn.Module):
    """AdaIN, LeakyReLU, 4×4 stride-2 conv; AdaIN, LeakyReLU, 3×3 conv."""

    def __init__(self, in_ch: int, out_ch: int, descriptor_nc: int):
        super().__init__()
        self.conv_0 = nn.Conv2d(in_ch, out_ch, 4, 2, 1)
        self.conv_1 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.norm_0 = DescriptorAdaIN(in_ch, descriptor_nc)
        self.norm_1 = DescriptorAdaIN(out_ch, descriptor_nc)

    def forward(self, x, d):
        x = self.conv_0(F.leaky_relu(self.norm_0(x, d), 0.1))
        return self.conv_1(F.leaky_relu(self.norm_1(x, d), 0.1))


class UpBlock(nn.Module):
    """Residual ×2 upsampling: (AdaIN, LeakyReLU, 3×3 conv, AdaIN, LeakyReLU, 3×3 transposed conv)
    plus a shortcut (AdaIN, LeakyReLU, 3×3 transposed conv)."""

    def __init__(self, in_ch: int, out_ch: int, descriptor_nc: int):
        super().__init__()
        up = dict(kernel_size=3, stride=2, padding=1, output_padding=1)
        self.conv_0 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.conv_1 = nn.ConvTranspose2d(out_ch, out_ch, **up)
        self.conv_s = nn.ConvTranspose2d(in_ch, out_ch, **up)
        self.norm_0 = DescriptorAdaIN(in_ch, descriptor_nc)
        self.norm_1 = DescriptorAdaIN(out_ch, descriptor_nc)
        self.norm_s = DescriptorAdaIN(in_ch, descriptor_nc)

    def forward(self, x, d):
        shortcut = self.conv_s(F.leaky_relu(self.norm_s(x, d), 0.1))
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, d), 0.1))
        return shortcut + self.conv_1(F.leaky_relu(self.norm_1(dx, d), 0.1))


class HourglassEncoder(nn.Module):
    def __init__(self, image_nc, descriptor_nc, base_nc, max_nc, layers):
        super().__init__()
        self.input_layer = nn.Conv2d(image_nc, base_nc, 7, 1, 3)
        self.layers = layers
        for i in range(layers):
            setattr(self, f"encoder{i}", DownBlock(min(base_nc * 2 ** i, max_nc), min(base_nc * 2 ** (i + 1), max_nc),
                                                   descriptor_nc))

    def forward(self, x, d) -> list[torch.Tensor]:
        feats = [self.input_layer(x)]
        for i in range(self.layers):
            feats.append(getattr(self, f"encoder{i}")(feats[-1], d))
        return feats


class HourglassDecoder(nn.Module):
    def __init__(self, descriptor_nc, base_nc, max_nc, encoder_layers, decoder_layers):
        super().__init__()
        self.levels = list(range(encoder_layers - decoder_layers, encoder_layers))[::-1]
        for i in self.levels:
            in_ch = min(base_nc * 2 ** (i + 1), max_nc) * (1 if i == encoder_layers - 1 else 2)  # skips double it
            out_ch = min(base_nc * 2 ** i, max_nc)
            setattr(self, f"decoder{i}", UpBlock(in_ch, out_ch, descriptor_nc))
        self.output_nc = 2 * out_ch

    def forward(self, feats: list[torch.Tensor], d) -> torch.Tensor:
        feats = list(feats)
        out = feats.pop()
        for i in self.levels:
            out = torch.cat([getattr(self, f"decoder{i}")(out, d), feats.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    def __init__(self, image_nc=3, descriptor_nc=256, base_nc=32, max_nc=256, encoder_layers=5, decoder_layers=3):
        super().__init__()
        self.encoder = HourglassEncoder(image_nc, descriptor_nc, base_nc, max_nc, encoder_layers)
        self.decoder = HourglassDecoder(descriptor_nc, base_nc, max_nc, encoder_layers, decoder_layers)
        self.output_nc = self.decoder.output_nc

    def forward(self, image, d):
        return self.decoder(self.encoder(image, d), d)


class LayerNorm2d(nn.Module):
    """LayerNorm over (C, H, W) with per-channel affine parameters of shape [C, 1, 1]."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x):
        shape = x.shape[1:]
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape))


class WarpingNet(nn.Module):
    """Source image [B, 3, H, W] + descriptor [B, 256] -> flow [B, 2, H/4, W/4] in pixels of that grid."""

    def __init__(self, image_nc=3, descriptor_nc=256, base_nc=32, max_nc=256, encoder_layers=5, decoder_layers=3):
        super().__init__()
        self.hourglass = Hourglass(image_nc, descriptor_nc, base_nc, max_nc, encoder_layers, decoder_layers)
        c = self.hourglass.output_nc
        self.flow_out = nn.Sequential(LayerNorm2d(c), nn.LeakyReLU(0.1), nn.Conv2d(c, 2, 7, 1, 3))

    def forward(self, image, descriptor):
        return self.flow_out(self.hourglass(image, descriptor))


class MotionGenerator(nn.Module):
    """PIRenderer's mapping + warping nets: (source image, 73×27 window) -> flow [B, 2, 64, 64] at 256."""

    def __init__(self, coeff_nc=SEMANTIC_DIM, descriptor_nc=256, mapping_layers=3, image_nc=3, base_nc=32, max_nc=256,
                 encoder_layers=5, decoder_layers=3):
        super().__init__()
        self.mapping_net = MappingNet(coeff_nc, descriptor_nc, mapping_layers)
        self.warpping_net = WarpingNet(image_nc, descriptor_nc, base_nc, max_nc, encoder_layers, decoder_layers)

    def forward(self, source: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """source [B, 3, 256, 256] in [-1, 1], window [B, 73, 27] -> (flow [B, 2, 64, 64], descriptor [B, 256])."""
        descriptor = self.mapping_net(window)
        return self.warpping_net(source, descriptor), descriptor


def flow_to_grid(flow: torch.Tensor) -> torch.Tensor:
    """Flow [B, 2, h, w] in pixels -> sampling grid [B, h, w, 2] in [-1, 1] (pixel centres at ±1)."""
    b, _, h, w = flow.shape
    ys = torch.linspace(-1, 1, h, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1, 1, w, device=flow.device, dtype=flow.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).expand(b, h, w, 2)
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=flow.device, dtype=flow.dtype)
    return grid + flow.permute(0, 2, 3, 1) * scale


def warp(x: torch.Tensor, flow: torch.Tensor, align_corners: bool = False, resize: str = "flow") -> torch.Tensor:
    """Resample x [B, C, H, W] where the flow [B, 2, h, w] (pixels of its own grid) points.

    A flow of another size is resized bilinearly to x's and rescaled to x's pixels first, so a zero
    flow stays zero at any size. ``align_corners=False`` is what
    PIRenderer (and so StyleHEAT's and StyleTalk's weights) used, although its grid puts pixel
    centres at ±1: a zero flow then shrinks the image by half a pixel at the borders. ``True``
    makes a zero flow the exact identity; use it for models trained here from scratch.
    PIRenderer resizes its sampling grid rather than the flow, which at 256 from 64 is a 64/63
    zoom for a zero flow (near the borders, up to 1.5 px from ours with ``False``, 2 px with
    ``True``); checkpoints/README.md says why we resize the flow. ``resize="grid"`` does what
    PIRenderer does (its sampling grid resized bilinearly, ``align_corners`` as given): the
    renderer of StyleTalk's released weights uses it, to reproduce the official frames.
    """
    h, w = flow.shape[-2:]
    if resize == "grid":
        grid = flow_to_grid(flow)
        if (h, w) != tuple(x.shape[-2:]):
            grid = F.interpolate(grid.permute(0, 3, 1, 2), size=x.shape[-2:], mode="bilinear",
                                 align_corners=False).permute(0, 2, 3, 1)
        return F.grid_sample(x, grid, align_corners=align_corners)
    if resize != "flow":
        raise ValueError(f"resize must be flow or grid, got {resize!r}")
    if (h, w) != tuple(x.shape[-2:]):
        sy, sx = (x.shape[-2] - 1) / max(h - 1, 1), (x.shape[-1] - 1) / max(w - 1, 1)
        flow = F.interpolate(flow, size=x.shape[-2:], mode="bilinear", align_corners=True)
        flow = flow * torch.tensor([sx, sy], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    return F.grid_sample(x, flow_to_grid(flow), align_corners=align_corners)
