"""StyleTalk's training-only networks, described in the paper and never released.

* :class:`SyncDiscriminator` (D_sync) — is this mouth in sync with these phonemes? A PointNet
  encodes the mouth's 3D keypoints over a few frames, a phoneme encoder the frame's 11-phoneme
  window; the cosine similarity of the two (non-negative) embeddings is the probability of sync
  (paper Eq. 4). Pretrained on real expressions against shifted phonemes, then frozen.
* :class:`SequencePatchDiscriminator` — PatchGAN over time on expression sequences [B, L, 64]:
  a logit vector per overlapping patch of frames. With ``outputs = C`` it is the style
  discriminator D_style (C speaking styles, cross-entropy, pretrained then frozen); with
  ``outputs = 1`` the temporal discriminator D_tem (hinge, trained with the generator).

The mouth keypoints are the 20 points 48-67 of the face model (the stand-in's or BFM's), taken as
displacements from the same identity's neutral mouth, so identity shape does not enter.
Pure ``nn.Module`` s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylization.styletalk.model import N_PHONEMES, WINDOW


class SyncDiscriminator(nn.Module):
    """(mouth [B, F, P, 3], phoneme windows [B, 11]) -> sync probability [B] in [0, 1].

    The PointNet treats each of the P mouth points as one element of a set, its feature the F
    frames' xyz displacements (3·F values, times ``scale``): shared per-point MLP, max over points,
    MLP head. The phoneme encoder embeds the window and flattens it through an MLP.

    Args:
        frames: F, frames of mouth motion per decision (centred on the phoneme window's frame).
        points: P, mouth points (20).
        dim: embedding size.
        scale: multiplies the displacements (face-model units are small).
    """

    def __init__(self, frames: int = 5, points: int = 20, dim: int = 128, width: int = 128, scale: float = 10.0,
                 window: int = WINDOW):
        super().__init__()
        self.frames, self.points, self.scale = frames, points, scale
        self.point_mlp = nn.Sequential(nn.Linear(3 * frames, width // 2), nn.ReLU(), nn.Linear(width // 2, width),
                                       nn.ReLU(), nn.Linear(width, 2 * width))
        self.mouth_head = nn.Sequential(nn.ReLU(), nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, dim))
        self.embedding = nn.Embedding(N_PHONEMES, 32)
        self.phoneme_head = nn.Sequential(nn.Linear(32 * window, width), nn.ReLU(), nn.Linear(width, width),
                                          nn.ReLU(), nn.Linear(width, dim))

    def embed_mouth(self, mouth: torch.Tensor) -> torch.Tensor:
        b = mouth.shape[0]
        per_point = mouth.permute(0, 2, 1, 3).reshape(b, self.points, -1) * self.scale  # [B, P, 3F]
        return F.relu(self.mouth_head(self.point_mlp(per_point).amax(1)))

    def embed_phonemes(self, phonemes: torch.Tensor) -> torch.Tensor:
        return F.relu(self.phoneme_head(self.embedding(phonemes).flatten(1)))

    def forward(self, mouth: torch.Tensor, phonemes: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(self.embed_mouth(mouth), self.embed_phonemes(phonemes), dim=-1, eps=1e-8)


def sync_loss(probability: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of sync probabilities [N] against 1 (in sync) or 0; -log P for target 1 (Eq. 5)."""
    p = probability.clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(p, torch.full_like(p, float(target)))


def mouth_windows(mouth: torch.Tensor, frames: int) -> torch.Tensor:
    """Per-frame mouth keypoints [B, L, P, 3] -> [B, L, frames, P, 3]: each frame's ``frames``-frame
    window centred on it, the clip's first / last frame repeated past its ends."""
    half = frames // 2
    padded = torch.cat([mouth[:, :1].expand(-1, half, -1, -1), mouth, mouth[:, -1:].expand(-1, half, -1, -1)], 1)
    return padded.unfold(1, frames, 1).permute(0, 1, 4, 2, 3)


class SequencePatchDiscriminator(nn.Module):
    """Expression sequences [B, L, in_dim] -> logits [B, outputs, L'] per patch of frames.

    A 1D PatchGAN: a kernel-4 stride-2 convolution per layer (``layers`` of them; LeakyReLU 0.2),
    then a kernel-3 convolution to ``outputs`` channels. Each output sees a patch of about
    3·2^layers frames.
    """

    def __init__(self, in_dim: int = 64, width: int = 128, layers: int = 3, outputs: int = 1):
        super().__init__()
        blocks, ch = [], in_dim
        for i in range(layers):
            out = width * min(2 ** i, 4)
            blocks += [nn.Conv1d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch = out
        self.net = nn.Sequential(*blocks, nn.Conv1d(ch, outputs, 3, 1, 1))

    def forward(self, exp: torch.Tensor) -> torch.Tensor:
        return self.net(exp.transpose(1, 2))


def style_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of per-patch style logits [B, C, L'] against one label per sequence [B] (Eq. 6)."""
    return F.cross_entropy(logits, labels[:, None].expand(-1, logits.shape[-1]))
