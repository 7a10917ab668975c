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

At the official configuration (``width=1``, ``frame_size=224``) the last video convolution (kernel
1x6x6) reduces the map to 1x1, and the audio tower's last (kernel 5x4) does so for 13x20 windows.
For a SyncNet trained here (``stage=syncnet``) the same layer sequence takes every channel count
times ``width`` and smaller frames (``frame_size``, e.g. 112), the last video kernel then being the
side of the map that reaches it (2 at 112); only the official configuration loads the release.
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
# What the video tower is shown: "face" — the official whole-face crop; "lower_half" — its lower half
# stretched to the square (Wav2Lip's expert sees the lower half too), for SyncNets trained here on
# small frames, where the mouth is a few pixels of the whole face.
INPUT_CROPS = ("face", "lower_half")


def _conv_bn_relu(conv: nn.Module, channels: int, batch_norm: type[nn.Module]) -> list[nn.Module]:
    return [conv, batch_norm(channels), nn.ReLU()]


def scaled(channels: int, width: float) -> int:
    """An official channel count times ``width`` (at least 1)."""
    return max(1, int(round(channels * width)))


def last_video_kernel(frame_size: int) -> int:
    """The side of the video map that reaches the last convolution for ``frame_size`` frames (6 at 224):
    conv 7 stride 2, pool 3 stride 2, conv 5 stride 2 pad 1, pool 3 stride 2 pad 1, pool 3 stride 2."""
    side = (frame_size - 7) // 2 + 1
    side = (side - 3) // 2 + 1
    side = (side + 2 - 5) // 2 + 1
    side = (side + 2 - 3) // 2 + 1
    side = (side - 3) // 2 + 1
    if side < 1:
        raise ValueError(f"frame_size {frame_size} is too small for the SyncNet video tower (at least 64)")
    return side


def audio_tower(width: float = 1.0) -> nn.Sequential:
    """[N, 1, 13, 20] MFCC -> [N, 512·width, 1, 1]. Shapes along the way: 13x20, pool -> 11x9, pool -> 5x4,
    conv 5x4 -> 1x1."""
    bn, c = nn.BatchNorm2d, lambda n: scaled(n, width)  # noqa: E731
    return nn.Sequential(
        *_conv_bn_relu(nn.Conv2d(1, c(64), 3, padding=1), c(64), bn),  # 0-2
        nn.MaxPool2d(1, 1),  # 3: an identity, kept for the indices
        *_conv_bn_relu(nn.Conv2d(c(64), c(192), 3, padding=1), c(192), bn),  # 4-6
        nn.MaxPool2d(3, stride=(1, 2)),  # 7
        *_conv_bn_relu(nn.Conv2d(c(192), c(384), 3, padding=1), c(384), bn),  # 8-10
        *_conv_bn_relu(nn.Conv2d(c(384), c(256), 3, padding=1), c(256), bn),  # 11-13
        *_conv_bn_relu(nn.Conv2d(c(256), c(256), 3, padding=1), c(256), bn),  # 14-16
        nn.MaxPool2d(3, stride=2),  # 17
        *_conv_bn_relu(nn.Conv2d(c(256), c(TOWER_DIM), (5, 4)), c(TOWER_DIM), bn),  # 18-20
    )


def video_tower(width: float = 1.0, frame_size: int = FRAME_SIZE) -> nn.Sequential:
    """[N, 3, 5, S, S] -> [N, 512·width, 1, 1, 1]. The first convolution spans the 5 frames (time 5 -> 1);
    at S = 224 space goes 224 -> 109, pool 54, conv 26, pool 13, three convs 13, pool 6, conv 6x6 -> 1."""
    bn, c = nn.BatchNorm3d, lambda n: scaled(n, width)  # noqa: E731
    k = last_video_kernel(frame_size)
    return nn.Sequential(
        *_conv_bn_relu(nn.Conv3d(3, c(96), (5, 7, 7), stride=(1, 2, 2)), c(96), bn),  # 0-2
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # 3
        *_conv_bn_relu(nn.Conv3d(c(96), c(256), (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), c(256), bn),  # 4-6
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 7
        *_conv_bn_relu(nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)), c(256), bn),  # 8-10
        *_conv_bn_relu(nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)), c(256), bn),  # 11-13
        *_conv_bn_relu(nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)), c(256), bn),  # 14-16
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # 17
        *_conv_bn_relu(nn.Conv3d(c(256), c(TOWER_DIM), (1, k, k)), c(TOWER_DIM), bn),  # 18-20
    )


def head(embed_dim: int, tower_dim: int = TOWER_DIM) -> nn.Sequential:
    """[N, tower_dim] -> [N, embed_dim]: Linear, BatchNorm1d, ReLU, Linear (no normalisation of the output:
    the official distances are plain euclidean ones between these vectors)."""
    return nn.Sequential(nn.Linear(tower_dim, tower_dim), nn.BatchNorm1d(tower_dim), nn.ReLU(),
                         nn.Linear(tower_dim, embed_dim))


class SyncNet(nn.Module):
    """The two-tower SyncNet; ``embed_dim`` is the official ``num_layers_in_fc_layers`` (1024 in the
    released ``syncnet_v2.model``).

    Attribute names and their registration order are the official state-dict order: ``netcnnaud``,
    ``netfcaud``, ``netfclip``, ``netcnnlip``.
    """

    def __init__(self, embed_dim: int = 1024, width: float = 1.0, frame_size: int = FRAME_SIZE,
                 input_crop: str = "face"):
        super().__init__()
        if input_crop not in INPUT_CROPS:
            raise ValueError(f"input_crop must be one of {INPUT_CROPS}, got {input_crop!r}")
        self.embed_dim, self.width, self.frame_size = embed_dim, float(width), int(frame_size)
        self.input_crop = input_crop  # what the evaluation crops for it (no parameters; see INPUT_CROPS)
        tower = scaled(TOWER_DIM, width)
        self.netcnnaud = audio_tower(width)
        self.netfcaud = head(embed_dim, tower)
        self.netfclip = head(embed_dim, tower)
        self.netcnnlip = video_tower(width, frame_size)

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC windows [N, 1, 13, 20] (cepstra x 10 ms steps) -> audio embeddings [N, embed_dim]."""
        expected = (1, MFCC_COEFFS, AUDIO_WINDOW_STEPS)
        if mfcc.ndim != 4 or tuple(mfcc.shape[1:]) != expected:
            raise ValueError(f"audio windows must be [N, {', '.join(map(str, expected))}], got {list(mfcc.shape)}")
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        """Video windows [N, 3, 5, S, S] (BGR, 0..255, channels x frames x height x width; S =
        ``frame_size``, 224 officially) -> video embeddings [N, embed_dim]."""
        expected = (3, VIDEO_WINDOW_FRAMES, self.frame_size, self.frame_size)
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
