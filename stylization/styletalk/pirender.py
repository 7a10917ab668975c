"""PIRenderer: a source face + a 73x27 coefficient window -> the face with that expression and pose.

StyleTalk's photo-real renderer (``renderer_checkpoint.pt``, ``net_G_ema``) and PIRender's ``face``
checkpoint share this layout (``tests/manifests/pirender_facegenerator.tsv``): ``mapping_net`` and
``warpping_net`` (sic) are Style-A's motion generator (:mod:`stylization.style_a.motion`, one
implementation), ``editing_net`` is here. Numerics follow the official ``generators/face_model.py``
and ``base_function.py``:

* the flow from the warping net (64x64 at 256) warps the source as PIRenderer does: its sampling
  grid resized bilinearly to the image, ``grid_sample`` without aligned corners
  (:func:`~stylization.style_a.motion.warp` with ``resize="grid"``);
* :class:`EditingNet`: source and warped image (6 channels) -> an encoder of a 7x7 block and three
  3x3 + average-pool blocks (64, 128, 256, 256 channels; LayerNorm2d, LeakyReLU 0.1) -> a decoder
  that at each level runs two descriptor-AdaIN residual blocks, upsamples (nearest, x2) through a
  3x3 block and adds the encoder's skip through a 3x3 "jump" block -> 7x7 conv + tanh.
  The official residual block computes ``norm1(conv1(x))`` and then overwrites it: its output is
  ``x + norm2(conv2(x))``; ours computes that (``conv1`` and ``norm1`` stay, unused, so the
  released files load strictly).

Pure ``nn.Module`` s; images in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylization.constants import SEMANTIC_DIM
from stylization.style_a.motion import LayerNorm2d, MappingNet, WarpingNet, warp
from stylization.style_a.refinement import AdaINResBlock


def _block(in_ch: int, out_ch: int, kernel: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(in_ch, out_ch, kernel, 1, kernel // 2), LayerNorm2d(out_ch), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers, nn.AvgPool2d(2)) if pool else nn.Sequential(*layers)


class _Seq(nn.Module):
    """A ``model`` Sequential (the official wrappers' single member)."""

    def __init__(self, model: nn.Sequential):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


class ResBlock(AdaINResBlock):
    """x + AdaIN(conv2(x), descriptor): the layout of Style-A's refinement block (``conv1``, ``norm1``,
    ``conv2``, ``norm2``), whose first half PIRenderer computes and discards (see the module note)."""

    def forward(self, x, descriptor):
        return x + self.norm2(self.conv2(x), descriptor)


class ResBlocks(nn.Module):
    def __init__(self, blocks: int, channels: int, descriptor_nc: int):
        super().__init__()
        self.blocks = blocks
        for i in range(blocks):
            setattr(self, f"res{i}", ResBlock(channels, descriptor_nc))

    def forward(self, x, descriptor):
        for i in range(self.blocks):
            x = getattr(self, f"res{i}")(x, descriptor)
        return x


class EditingEncoder(nn.Module):
    def __init__(self, in_ch: int, base_nc: int, max_nc: int, layers: int):
        super().__init__()
        self.layers = layers
        self.first = _Seq(_block(in_ch, base_nc, 7))
        for i in range(layers):
            setattr(self, f"down{i}", _Seq(_block(min(base_nc * 2 ** i, max_nc), min(base_nc * 2 ** (i + 1), max_nc),
                                                  3, pool=True)))

    def forward(self, x) -> list[torch.Tensor]:
        out = [self.first(x)]
        for i in range(self.layers):
            out.append(getattr(self, f"down{i}")(out[-1]))
        return out


class EditingDecoder(nn.Module):
    def __init__(self, image_nc: int, descriptor_nc: int, base_nc: int, max_nc: int, layers: int, blocks: int):
        super().__init__()
        self.layers = layers
        for i in reversed(range(layers)):
            in_ch, out_ch = min(base_nc * 2 ** (i + 1), max_nc), min(base_nc * 2 ** i, max_nc)
            setattr(self, f"up{i}", _Seq(_block(in_ch, out_ch, 3)))
            setattr(self, f"res{i}", ResBlocks(blocks, in_ch, descriptor_nc))
            setattr(self, f"jump{i}", _Seq(_block(out_ch, out_ch, 3)))
        self.final = _Seq(nn.Sequential(nn.Conv2d(min(base_nc, max_nc), image_nc, 7, 1, 3), nn.Tanh()))

    def forward(self, features: list[torch.Tensor], descriptor):
        out = features[-1]
        for i in reversed(range(self.layers)):
            out = getattr(self, f"res{i}")(out, descriptor)
            out = getattr(self, f"up{i}")(F.interpolate(out, scale_factor=2))
            out = getattr(self, f"jump{i}")(features[i]) + out
        return self.final(out)


class EditingNet(nn.Module):
    """(source, warped source) [B, 3, H, W] each + descriptor [B, 256] -> the edited image [B, 3, H, W]."""

    def __init__(self, image_nc: int = 3, descriptor_nc: int = 256, base_nc: int = 64, max_nc: int = 256,
                 layers: int = 3, blocks: int = 2):
        super().__init__()
        self.encoder = EditingEncoder(2 * image_nc, base_nc, max_nc, layers)
        self.decoder = EditingDecoder(image_nc, descriptor_nc, base_nc, max_nc, layers, blocks)

    def forward(self, source, warped, descriptor):
        return self.decoder(self.encoder(torch.cat([source, warped], 1)), descriptor)


class PIRenderer(nn.Module):
    """``mapping_net``, ``warpping_net``, ``editing_net``; ``forward(source [B, 3, 256, 256], window
    [B, 73, 27], warp_only=False)`` -> {"flow" [B, 2, 64, 64] (pixels of that grid), "warp_image",
    and unless ``warp_only`` "fake_image"} (PIRenderer's first training stage trains the warp alone)."""

    def __init__(self, coeff_nc: int = SEMANTIC_DIM, descriptor_nc: int = 256, mapping_layers: int = 3,
                 image_nc: int = 3, warp_base_nc: int = 32, max_nc: int = 256, encoder_layers: int = 5,
                 decoder_layers: int = 3, edit_base_nc: int = 64, edit_layers: int = 3, edit_blocks: int = 2):
        super().__init__()
        self.mapping_net = MappingNet(coeff_nc, descriptor_nc, mapping_layers)
        self.warpping_net = WarpingNet(image_nc, descriptor_nc, warp_base_nc, max_nc, encoder_layers, decoder_layers)
        self.editing_net = EditingNet(image_nc, descriptor_nc, edit_base_nc, max_nc, edit_layers, edit_blocks)

    def forward(self, source: torch.Tensor, window: torch.Tensor, warp_only: bool = False) -> dict[str, torch.Tensor]:
        descriptor = self.mapping_net(window)
        flow = self.warpping_net(source, descriptor)
        out = {"flow": flow, "warp_image": warp(source, flow, align_corners=False, resize="grid")}
        if not warp_only:
            out["fake_image"] = self.editing_net(source, out["warp_image"], descriptor)
        return out
