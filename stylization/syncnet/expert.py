"""A frozen SyncNet as a lip-sync expert loss (Wav2Lip's idea, SyncNet v2's multi-way form).

Wav2Lip trains its generator against a frozen, pretrained SyncNet: generated 5-frame windows must
embed close to their audio. Here the expert is a SyncNet trained with ``stage=syncnet`` (or the
released file), and the loss is the one it was trained with: cross-entropy of the in-sync offset
among the audio windows at offsets -K..K, so a window that matches a neighbouring offset better
than its own is penalised. The network's weights never change (``requires_grad`` off, eval mode);
gradients flow to the frames only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylization.syncnet.model import SyncNet


class SyncExpertLoss(nn.Module):
    """``syncnet`` frozen; ``forward(frames, audio, target)`` -> scalar loss.

    frames: generated windows [B, 5, 3, H, W], RGB in [-1, 1] (the renderers' range); they are
    cropped as the expert's ``input_crop`` says, resized to its ``frame_size`` and converted to its
    input (BGR, 0..255).
    audio: MFCC windows at every offset [B, O, 1, 13, 20]; target: [B] index of the in-sync offset.
    """

    def __init__(self, syncnet: SyncNet):
        super().__init__()
        self.syncnet = syncnet.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # the expert stays in eval mode (BatchNorm running statistics)
        super().train(mode)
        self.syncnet.eval()
        return self

    def forward(self, frames: torch.Tensor, audio: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        size = self.syncnet.frame_size
        x = frames.flatten(0, 1)
        if self.syncnet.input_crop == "lower_half":
            x = x[..., x.shape[-2] // 2:, :]
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = ((x.flip(1) + 1) * 127.5).view(b, t, 3, size, size).transpose(1, 2)  # BGR 0..255 [B, 3, 5, S, S]
        v = self.syncnet.embed_video(x)
        a = self.syncnet.embed_audio(audio.flatten(0, 1)).view(b, audio.shape[1], -1)
        logits = -(v[:, None] - a).norm(dim=-1)
        return F.cross_entropy(logits, target)
