"""Fréchet Inception Distance over video frames, with torch-fidelity's Inception and statistics.

Why torch-fidelity: it is the implementation torchmetrics' FID runs on, its Inception-v3 is the
TF-2015-12-05 graph ported with TF1's bilinear resize (so its features match the TensorFlow FID
the field started from, which pytorch-fid approximates with torchvision's resize), and it takes
the weights from a local file (``feature_extractor_weights_path``) instead of downloading them.
Its weights file and pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` have the same tensor
names and shapes (``tests/manifests/inception_fid.tsv``); :func:`stylization.loading.inception_fid`
loads either.

FID is a set statistic: the benchmark pools the 2048-d pool features of every frame of every
clip (generated on one side, ground truth on the other) and computes one distance. No file I/O
here; the network is passed in.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FEATURE = "2048"  # the pool3 features FID is defined on


@torch.no_grad()
def inception_features(extractor: nn.Module, frames: np.ndarray, batch: int = 32) -> np.ndarray:
    """uint8 RGB frames [T, H, W, 3] (any size: the extractor resizes to 299 as TF1 did) ->
    float64 pool features [T, 2048]."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    device = next(extractor.parameters()).device
    out = []
    for start in range(0, len(frames), batch):
        chunk = torch.from_numpy(np.ascontiguousarray(frames[start:start + batch])).permute(0, 3, 1, 2)
        (features,) = extractor(chunk.to(device))
        out.append(features.double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2048))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets [N, D] and [M, D]
    (N, M >= 2): |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2), torch-fidelity's statistics
    and its eigenvalue form of the matrix square root (stable for the rank-deficient covariances
    of fewer frames than dimensions)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    if len(features_a) < 2 or len(features_b) < 2:
        raise ValueError(f"FID needs at least 2 frames per set, got {len(features_a)} and {len(features_b)}")
    stats = [fid_features_to_statistics(torch.from_numpy(np.asarray(f, np.float64))) for f in (features_a, features_b)]
    return float(fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"])


def fid(extractor: nn.Module, frames_a: np.ndarray, frames_b: np.ndarray, batch: int = 32) -> float:
    """FID between two sets of uint8 RGB frames [N, H, W, 3] and [M, H, W, 3]."""
    return frechet_distance(inception_features(extractor, frames_a, batch),
                            inception_features(extractor, frames_b, batch))
