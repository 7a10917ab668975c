"""Deep3DFaceRecon's coefficient regressor: an aligned 224 face -> 257 coefficients.

A torchvision-layout ResNet-50 without its classifier (``backbone.*``) and seven 1×1
convolutions (``final_layers.0-6``: 80 id, 64 exp, 80 tex, 3 angle, 27 gamma, 2 + 1 trans),
so ``epoch_20.pth['net_recon']`` loads with ``strict=True``. Input: RGB in [0, 1] (no mean /
std), [B, 3, 224, 224], aligned as Deep3DFaceRecon's ``align_img`` does.
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_SIZES = (80, 64, 80, 3, 27, 2, 1)  # id, exp, tex, angle, gamma, trans xy, trans z -> 257


class ReconNet(nn.Module):
    """[B, 3, 224, 224] in [0, 1] -> coefficients [B, 257] (layout: stylization.data.coeffs)."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        self.backbone = resnet50(weights=None)
        del self.backbone.fc  # the regressor heads below replace the classifier
        # Deep3DFaceRecon starts the heads at zero: an untrained net predicts the mean face.
        self.final_layers = nn.ModuleList(nn.Conv2d(2048, n, 1) for n in HEAD_SIZES)
        for layer in self.final_layers:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> pooled ResNet-50 features [B, 2048, 1, 1]."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))
        return b.avgpool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return torch.cat([head(f) for head in self.final_layers], dim=1).flatten(1)
