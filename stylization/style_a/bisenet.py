"""BiSeNet face parsing (19 classes), the parser VToonify feeds its content encoder.

Layout matches face-parsing.PyTorch's ``faceparsing.pth`` (a plain state dict): a
ResNet-18 context path (``cp.resnet.*``, torchvision names) with attention refinement at
1/16 and 1/32, a global-context branch, a feature-fusion module, and three output heads
(main at 1/8, auxiliaries on the 1/8 and 1/16 context features), all upsampled bilinearly
(align_corners=True) to the input size.

Input: RGB [B, 3, H, W] (H, W multiples of 32). Two conventions exist for its range:
face-parsing.PyTorch trained the network on ImageNet-normalised RGB, but VToonify feeds it ``2·x``
for a frame x in [-1, 1] (no ImageNet statistics), at inference and in its training scripts, so
every VToonify-D content encoder learned that map. Our only caller,
:meth:`~stylization.style_a.renderer.StyleARenderer.parse`, feeds VToonify-D and uses VToonify's.
Output: (logits [B, 19, H, W], aux16, aux32); VToonify uses the first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylization.constants import PARSING_CLASSES


class ConvBNReLU(nn.Module):
    def __init__(self, in_ch, out_ch, kernel=3, stride=1, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class AttentionRefinement(nn.Module):
    """Features re-weighted per channel by a sigmoid of their global average."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x):
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        from torchvision.models import resnet18

        self.resnet = resnet18(weights=None)
        del self.resnet.fc
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, 1, 1, 0)

    def forward(self, x):
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        feat8 = r.layer2(r.layer1(x))
        feat16 = r.layer3(feat8)
        feat32 = r.layer4(feat16)
        context = self.conv_avg(feat32.mean((2, 3), keepdim=True))
        up32 = self.conv_head32(F.interpolate(self.arm32(feat32) + context, size=feat16.shape[-2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[-2:], mode="nearest"))
        return feat8, up16, up32  # 1/8, 1/8, 1/16


class FeatureFusion(nn.Module):
    def __init__(self, in_ch=256, out_ch=256):
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, 1, 1, 0)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, 1, bias=False)

    def forward(self, spatial, context):
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * atten + feat


class SegmentationHead(nn.Module):
    def __init__(self, in_ch, mid_ch, n_classes):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch)
        self.conv_out = nn.Conv2d(mid_ch, n_classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    def __init__(self, n_classes: int = PARSING_CLASSES):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = SegmentationHead(256, 256, n_classes)
        self.conv_out16 = SegmentationHead(128, 64, n_classes)
        self.conv_out32 = SegmentationHead(128, 64, n_classes)

    def forward(self, x):
        size = x.shape[-2:]
        feat8, context8, context16 = self.cp(x)
        heads = (self.conv_out(self.ffm(feat8, context8)), self.conv_out16(context8), self.conv_out32(context16))
        return tuple(F.interpolate(h, size=size, mode="bilinear", align_corners=True) for h in heads)

