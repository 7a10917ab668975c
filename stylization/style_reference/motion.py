"""Audio -> 68 x 3 landmark motion: the method's audio encoding and motion generator (§3.1).

The paper extracts audio features (80-d log-mel spectrograms, then an audio encoder), projects them
onto a manifold of the target's speech features (Live Speech Portraits' manifold projection), and
generates "the motion around the mouth, eye, head" from them; it gives no architecture. Ours:

* :class:`AudioEncoder` — per 25 fps frame, the data layer's 80 x 16 log-mel window
  (:func:`~stylization.data.audio.mel_windows`: 0.2 s around the frame, 12.5 ms hop; the paper's hop
  is 8.3 ms) -> four stride-2 convolutions -> mean pooling -> a ``feature_dim`` feature.
* :class:`MotionGenerator` — features [B, T, D] -> a bidirectional LSTM -> face motion [B, T, 68, 3]
  and pose motion [B, T, 6] (:mod:`stylization.data.keypoint_motion`: keypoints in the head's frame and
  the head pose, each minus its clip mean), predicted in units of ``face_scale`` / ``pose_scale``
  (per-coordinate standard deviations of the training motion, buffers the stage sets once, so the
  network's outputs are O(1) and the checkpoint carries them). The motion vector the style transfer
  compares is both, normalised: 204 + 6 = 210 numbers a frame (:meth:`MotionGenerator.normalise`).
* :func:`manifold_projection` — LSP's step (Lu et al. 2021, §3.1): each feature is replaced by its
  locally linear reconstruction from its K nearest neighbours in a bank of the target's features
  (weights summing to one, from the regularised Gram system of locally linear embedding), blended
  with the original by ``weight``. The paper says only that it "incorporates" the technique; the bank
  here is the features of the audio given with the style references (see
  :mod:`stylization.style_reference.transfer`), exact K-NN search with faiss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stylization.constants import N_LANDMARKS

POSE_DIM = 6
MOTION_DIM = N_LANDMARKS * 3 + POSE_DIM  # 210: the paper's 68 x 3 landmarks (head frame) + the head pose


class AudioEncoder(nn.Module):
    """Mel windows [B, T, 1, 80, 16] -> features [B, T, feature_dim]."""

    def __init__(self, channels: int = 32, feature_dim: int = 128):
        super().__init__()
        layers, c_in = [], 1
        for c_out in (channels, 2 * channels, 4 * channels, 4 * channels):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(4, c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)  # 80 x 16 -> 5 x 1
        self.out = nn.Linear(c_in, feature_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.ndim != 5 or mel.shape[2:] != (1, 80, 16):
            raise ValueError(f"mel windows must be [B, T, 1, 80, 16], got {list(mel.shape)}")
        b, t = mel.shape[:2]
        x = self.convs(mel.reshape(b * t, 1, 80, 16)).mean((2, 3))
        return self.out(x).view(b, t, -1)


class MotionGenerator(nn.Module):
    """Audio features -> (face motion, pose motion); :meth:`forward` runs the encoder too.

    Args:
        encoder_channels, feature_dim: the :class:`AudioEncoder`'s sizes.
        hidden: LSTM width per direction; layers: LSTM layers.
        dropout: dropout on the audio features and between LSTM layers (training only; against learning
            the training voices by heart).
    """

    def __init__(self, encoder_channels: int = 32, feature_dim: int = 128, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        self.encoder = AudioEncoder(encoder_channels, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(feature_dim, hidden, layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(2 * hidden, MOTION_DIM)
        self.register_buffer("face_scale", torch.ones(N_LANDMARKS, 3))
        self.register_buffer("pose_scale", torch.ones(POSE_DIM))

    def set_motion_scale(self, face: torch.Tensor, pose: torch.Tensor) -> None:
        """Output scales [68, 3] and [6] (> 0): the training motion's standard deviations."""
        self.face_scale.copy_(face.clamp_min(1e-6))
        self.pose_scale.copy_(pose.clamp_min(1e-6))

    def normalise(self, face: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Motion ([..., 68, 3], [..., 6]) -> the network's units, one vector [..., 210] (the style network's input)."""
        return torch.cat([(face / self.face_scale).flatten(-2), pose / self.pose_scale], -1)

    def style_vector(self, face: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Motion ([..., 68, 3], [..., 6]) -> the style transfer network's input [..., 210]: the paper's 68 x 3
        landmark vector over one scale for all its coordinates (the root mean square of ``face_scale``, so
        the points that move most, jaw and lips, weigh most, as in the landmarks themselves), then the head
        pose over ``pose_scale`` (the paper's landmarks are posed: they carry the head's motion too)."""
        return torch.cat([face.flatten(-2) / self.face_scale.pow(2).mean().sqrt(), pose / self.pose_scale], -1)

    def decode(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [B, T, D] -> (face motion [B, T, 68, 3], pose motion [B, T, 6]) in face model units / radians."""
        h, _ = self.lstm(self.dropout(features))
        out = self.head(h)
        face = out[..., :N_LANDMARKS * 3].unflatten(-1, (N_LANDMARKS, 3)) * self.face_scale
        return face, out[..., N_LANDMARKS * 3:] * self.pose_scale

    def forward(self, mel: torch.Tensor, projection: "FeatureBank | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mel windows [B, T, 1, 80, 16] -> (face motion [B, T, 68, 3], pose motion [B, T, 6]);
        ``projection`` projects the audio features first."""
        features = self.encoder(mel)
        if projection is not None:
            features = projection(features)
        return self.decode(features)


class FeatureBank(nn.Module):
    """A bank of audio features [M, D] and the projection onto it (:func:`manifold_projection`).

    A module (its bank a buffer) so that a transferred run saves and loads it like its weights.
    """

    def __init__(self, bank: torch.Tensor, k: int = 10, weight: float = 1.0):
        super().__init__()
        if bank.ndim != 2 or bank.shape[0] < 1:
            raise ValueError(f"a feature bank must be [M >= 1, D], got {list(bank.shape)}")
        self.register_buffer("bank", bank.detach().float().clone())
        self.k, self.weight = int(k), float(weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        flat = features.reshape(-1, features.shape[-1])
        return manifold_projection(flat, self.bank, self.k, self.weight).view_as(features)


def nearest(bank: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact K nearest neighbours (squared L2) with faiss: (distances [N, k], indices [N, k])."""
    import faiss

    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(np.ascontiguousarray(bank, np.float32))
    return index.search(np.ascontiguousarray(queries, np.float32), k)


def lle_weights(x: torch.Tensor, neighbours: torch.Tensor, reg: float = 1e-3) -> torch.Tensor:
    """Locally linear reconstruction weights: x [N, D], neighbours [N, K, D] -> w [N, K], rows summing
    to 1, minimising ||x - sum_k w_k n_k||^2 with the Gram matrix regularised by ``reg · trace``."""
    diff = x[:, None, :] - neighbours  # [N, K, D]
    gram = diff @ diff.transpose(1, 2)  # [N, K, K]
    k = gram.shape[-1]
    trace = gram.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-12)
    gram = gram + reg * trace[:, None, None] * torch.eye(k, dtype=gram.dtype, device=gram.device)
    w = torch.linalg.solve(gram, torch.ones(gram.shape[:2], dtype=gram.dtype, device=gram.device))
    return w / w.sum(-1, keepdim=True)


def manifold_projection(features: torch.Tensor, bank: torch.Tensor, k: int = 10, weight: float = 1.0) -> torch.Tensor:
    """LSP's manifold projection: features [N, D] -> [N, D], each ``weight · sum_k w_k b_k + (1 - weight) · x``
    with b_k its k nearest bank features [M, D] and w their LLE weights (:func:`lle_weights`). The
    projection is treated as a constant offset for gradients (features + (projected - features).detach())."""
    k = min(int(k), bank.shape[0])
    _, idx = nearest(bank.detach().cpu().numpy(), features.detach().cpu().numpy(), k)
    neighbours = bank[torch.from_numpy(idx).to(bank.device)]  # [N, k, D]
    with torch.no_grad():
        w = lle_weights(features.detach().double(), neighbours.double()).to(features.dtype)
        projected = (w[..., None] * neighbours).sum(1)
    return features + weight * (projected - features).detach()


def blend(transferred: torch.Tensor, untransferred: torch.Tensor, gamma: float) -> torch.Tensor:
    """γ · transferred + (1 - γ) · untransferred motion: the style strength at inference (Eq. 6's γ)."""
    return gamma * transferred + (1 - gamma) * untransferred


class StyleRefMotion(nn.Module):
    """Inference motion: a (transferred) generator, optionally blended with the untransferred one by
    ``strength`` γ (:func:`blend`) and with its audio features projected onto ``bank``."""

    def __init__(self, generator: MotionGenerator, untransferred: MotionGenerator | None = None,
                 bank: FeatureBank | None = None, strength: float = 1.0):
        super().__init__()
        self.generator, self.untransferred, self.bank = generator, untransferred, bank
        self.strength = float(strength)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mel windows [B, T, 1, 80, 16] -> (face motion [B, T, 68, 3], pose motion [B, T, 6])."""
        face, pose = self.generator(mel, self.bank)
        if self.untransferred is None or self.strength == 1.0:
            return face, pose
        face0, pose0 = self.untransferred(mel, self.bank)
        return blend(face, face0, self.strength), blend(pose, pose0, self.strength)
