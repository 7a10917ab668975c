"""ArcFace identity embeddings for CSIM: insightface's IResNet backbone and its 5-point alignment.

The network is the ``arcface_torch`` backbone (``iresnet18/34/50/100/200``) in the released
layout, so insightface's ``backbone.pth`` files (e.g. ``ms1mv3_arcface_r100_fp16``) load strictly
(``tests/manifests/arcface_iresnet{50,100}.tsv``; :func:`stylization.loading.arcface`). It maps
an aligned RGB face [N, 3, 112, 112] in [-1, 1] to a 512-d embedding; the cosine of two
embeddings is the identity similarity.

Alignment is insightface's: the similarity transform (least squares, no reflection) that takes
five points (eye centres, nose tip, mouth corners) onto :data:`ARCFACE_TEMPLATE`, then a 112² warp
with black borders. Five points from the 68-point iBUG landmarks: the mean of each eye's six
points, point 30 and points 48 and 54 (the conversion Deep3DFaceRecon uses).

Pure geometry and ``nn.Module`` here; no file I/O (the file is read by ``stylization.loading``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# insightface's arcface_dst: where the five points go in the 112 x 112 crop (x, y pixels).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
CROP = 112
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 200: (6, 26, 60, 6)}
WIDTHS = (64, 128, 256, 512)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """iBUG 68 landmarks [68, 2] -> [5, 2]: the eye centres (image left first), nose tip, mouth corners."""
    lm = np.asarray(landmarks, np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)


def alignment_matrix(points: np.ndarray, size: int = CROP) -> np.ndarray:
    """Five points [5, 2] in image pixels -> the 2 x 3 matrix of the similarity transform onto the
    template scaled to ``size`` (a multiple of 112), for ``cv2.warpAffine``."""
    from skimage.transform import SimilarityTransform

    if size % CROP:
        raise ValueError(f"ArcFace crops are multiples of {CROP} px, got {size}")
    src, dst = np.asarray(points, np.float64), ARCFACE_TEMPLATE.astype(np.float64) * (size / CROP)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
        ok = bool(tform)
    else:
        tform = SimilarityTransform()
        ok = tform.estimate(src, dst)
    if not ok or not np.isfinite(tform.params).all():
        raise ValueError("the five points are degenerate (collinear or coincident)")
    return tform.params[:2].astype(np.float64)


def align_face(image: np.ndarray, points: np.ndarray, size: int = CROP) -> np.ndarray:
    """RGB uint8 [H, W, 3] and its five points -> the aligned face, uint8 [size, size, 3]."""
    import cv2

    return cv2.warpAffine(np.ascontiguousarray(image), alignment_matrix(points, size), (size, size), borderValue=0.0)


def to_input(faces: np.ndarray) -> torch.Tensor:
    """Aligned RGB uint8 faces [N, 112, 112, 3] -> the network's input [N, 3, 112, 112] in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float()
    return x.div(255.0).sub(0.5).div(0.5)


class Block(nn.Module):
    """The pre-activation residual block: BN, 3x3 conv, BN, PReLU, 3x3 conv (stride here), BN, + skip."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace's backbone: [N, 3, 112, 112] in [-1, 1] -> [N, ``embed_dim``] (not normalised).

    Stem 3x3 conv (64) + BN + PReLU at 112², four stages of :class:`Block` (64, 128, 256, 512
    channels, each starting with stride 2: 56, 28, 14, 7 px), BN, flatten (512·7·7), dropout,
    linear, BatchNorm1d. ``depth`` picks the block counts of :data:`DEPTHS`.
    """

    def __init__(self, depth: int = 100, embed_dim: int = 512, dropout: float = 0.0):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"IResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        self.depth = depth
        self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0], eps=1e-5)
        self.prelu = nn.PReLU(WIDTHS[0])
        in_ch = WIDTHS[0]
        for i, (count, width) in enumerate(zip(DEPTHS[depth], WIDTHS)):
            blocks = [Block(in_ch, width, 2)] + [Block(width, width) for _ in range(count - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_ch = width
        self.bn2 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch * 7 * 7, embed_dim)
        self.features = nn.BatchNorm1d(embed_dim, eps=1e-5)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)  # frozen at 1 in the official training too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def depth_of(state: dict) -> int | None:
    """The IResNet depth whose block counts a state dict's ``layerK.M.`` keys have, or None."""
    counts = []
    for k in range(1, 5):
        blocks = {int(key.split(".")[1]) for key in state if key.startswith(f"layer{k}.")}
        counts.append(max(blocks) + 1 if blocks else 0)
    return next((d for d, c in DEPTHS.items() if tuple(counts) == c), None)
