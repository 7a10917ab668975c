"""SyncNet v2 (Chung & Zisserman, "Out of time", 2016), the network behind LSE-D and LSE-C.

The layout is joonson/syncnet_python's ``SyncNetModel.S(num_layers_in_fc_layers=1024)``, whose
released ``syncnet_v2.model`` is a plain state dict; the names and shapes are pinned by
``tests/manifests/syncnet_v2.tsv``. Each ``nn.Sequential`` keeps the official index of every layer,
pooling and activation included, because the indices are the parameter names.

Two towers map to one embedding space:

* audio — :meth:`SyncNet.embed_audio` (official ``forward_aud``): MFCC windows [N, 1, 13, 20]
  (13 cepstra x 20 steps of 10 ms = 0.2 s = 5 video frames at 25 fps) -> [N, embed_dim];
* video — :meth:`SyncNet.embed_video` (official ``forward_lip``): windows of 5 consecutive frames
  [N, 3, 5, 224, 224] -> [N, embed_dim]. The official input is the 224x224 face crop in **BGR**
  order as ``cv2`` reads it, raw 0..255 floats with no normalisation
  (:mod:`stylization.syncnet.evaluate` builds it).

The spatial size is fixed: the last video convolution (kernel 1x6x6) must reduce the map to 1x1, which
it does only for 224x224 frames, and the audio tower's last (kernel 5x4) only for 13x20 windows.
"""

from __future__ import annotations

import torch
from torch import nn

from stylization.constants import FPS

VIDEO_WINDOW_FRAMES = 5  # consecutive frames per video window (0.2 s at 25 fps)
FRAME_SIZE = 224  # px, side of the face crop the video tower reads
MFCC_COEFFS = 13  # cepstra per MFCC step
MFCC_RATE = 100  # MFCC steps per second (10 ms hop)
MFCC_STEPS_PER_FRAME = MFCC_RATE // FPS  # 4: the audio window of video window i starts at step 4i
AUDIO_WINDOW_STEPS = VIDEO_WINDOW_FRAMES * MFCC_STEPS_PER_FRAME  # 20
TOWER_DIM = 512  # channels of either tower's last convolution, flattened at 1x1 into the head


def _conv_bn_relu(conv: nn.Module, channels: int, batch_norm: type[nn.Module]) -> list[nn.Module]:
    return [conv, batch_norm(channels), nn.ReLU()]


def audio_tower() -> nn.Sequential:
    """[N, 1, 13, 20] MFCC -> [N, 512, 1, 1]. Shapes along the way: 13x20, pool -> 11x9, pool -> 5x4,
    conv 5x4 -> 1x1."""
    bn = nn.BatchNorm2d
    return nn.Sequential(
        *_conv_bn_relu(nn.Conv2d(1, 64, 3, padding=1), 64, bn),  # 0-2
        nn.MaxPool2d(1, 1),  # 3: an identity, kept for the indices
        *_conv_bn_relu(nn.Conv2d(64, 192, 3, padding=1), 192, bn),  # 4-6
        nn.MaxPool2d(3, stride=(1, 2)),  # 7
        *_conv_bn_relu(nn.Conv2d(192, 384, 3, padding=1), 384, bn),  # 8-10
        *_conv_bn_relu(nn.Conv2d(384, 256, 3, padding=1), 256, bn),  # 11-13
        *_conv_bn_relu(nn.Conv2d(256, 256, 3, padding=1), 256, bn),  # 14-16
        nn.MaxPool2d(3, stride=2),  # 17
        *_conv_bn_relu(nn.Conv2d(256, TOWER_DIM, (5, 4)), TOWER_DIM, bn),  # 18-20
    )


def video_tower() -> nn.Sequential:
    """[N, 3, 5, 224, 224] -> [N, 512, 1, 1, 1]. The first convolution spans the 5 frames (time 5 -> 1);
    space goes 224 -> 109, pool 54, conv 26, pool 13, three convs 13, pool 6, conv 6x6 -> 1."""
    bn = nn.BatchNorm3d
    return nn.Sequential(
        *_conv_bn_relu(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96, bn),  # 0-2
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # 3
        *_conv_bn_relu(nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256, bn),  # 4-6
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 7
        *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn),  # 8-10
        *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn),  # 11-13
        *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, bn),  # 14-16
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # 17
        *_conv_bn_relu(nn.Conv3d(256, TOWER_DIM, (1, 6, 6)), TOWER_DIM, bn),  # 18-20
    )


def head(embed_dim: int) -> nn.Sequential:
    """[N, 512] -> [N, embed_dim]: Linear, BatchNorm1d, ReLU, Linear (no normalisation of the output:
    the official distances are plain euclidean ones between these vectors)."""
    return nn.Sequential(nn.Linear(TOWER_DIM, TOWER_DIM), nn.BatchNorm1d(TOWER_DIM), nn.ReLU(),
                         nn.Linear(TOWER_DIM, embed_dim))


class SyncNet(nn.Module):
    """The two-tower SyncNet; ``embed_dim`` is the official ``num_layers_in_fc_layers`` (1024 in the
    released ``syncnet_v2.model``).

    Attribute names and their registration order are the official state-dict order: ``netcnnaud``,
    ``netfcaud``, ``netfclip``, ``netcnnlip``.
    """

    def __init__(self, embed_dim: int = 1024):
        super().__init__()
        self.embed_dim = embed_dim
        self.netcnnaud = audio_tower()
        self.netfcaud = head(embed_dim)
        self.netfclip = head(embed_dim)
        self.netcnnlip = video_tower()

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC windows [N, 1, 13, 20] (cepstra x 10 ms steps) -> audio embeddings [N, embed_dim]."""
        expected = (1, MFCC_COEFFS, AUDIO_WINDOW_STEPS)
        if mfcc.ndim != 4 or tuple(mfcc.shape[1:]) != expected:
            raise ValueError(f"audio windows must be [N, {', '.join(map(str, expected))}], got {list(mfcc.shape)}")
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Video windows [N, 3, 5, 224, 224] (BGR, 0..255, channels x frames x height x width) ->
        video embeddings [N, embed_dim]."""
        expected = (3, VIDEO_WINDOW_FRAMES, FRAME_SIZE, FRAME_SIZE)
        if frames.ndim != 5 or tuple(frames.shape[1:]) != expected:
            raise ValueError(f"video windows must be [N, {', '.join(map(str, expected))}], got {list(frames.shape)}")
        return self.netfclip(self.netcnnlip(frames).flatten(1))

    def forward(self, frames: torch.Tensor, mfcc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(video windows [N, 3, 5, 224, 224], MFCC windows [N, 1, 13, 20]) -> (video [N, D], audio [N, D])."""
        return self.embed_video(frames), self.embed_audio(mfcc)


def with_batch_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with a zero ``num_batches_tracked`` beside every BatchNorm's ``running_mean`` that lacks
    one. The released file predates torch 0.4.1, which introduced the counter, and the official loader
    copies entry by entry, so a file without counters loads there; the counter only matters for
    training with ``momentum=None``, so zero is exact for evaluation."""
    out = dict(state)
    for key in state:
        if key.endswith(".running_mean"):
            out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out
