"""Does a rendered mouth follow the target's? Mouth boxes, box PSNR and mouth-motion scores.

Frames are [N, 3, S, S] in [0, 1]; landmarks the 68 iBUG points in pixels of S.

* :func:`mouth_boxes` — a box around landmarks 48-67 per frame, enlarged (also the region of
  Style-A's mouth loss).
* :func:`box_psnr` — PSNR inside each frame's box.
* :func:`mouth_changes` — how one item's mouth changes over its frames: the pixels of one box
  (the mean of the frames' boxes) minus their mean over the frames, for the model and the target.
* :func:`motion_sums` / :func:`motion_scores` — summed over items, those changes give the
  correlation of the model's change with the target's (0: unrelated; 1: it moves as the target
  does) and the ratio of their RMS, the gain (0: a still mouth). A model that ignores the
  coefficients scores 0 and 0; a perfect one 1 and 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stylization.constants import MOUTH
from stylization.metrics.image import psnr


def mouth_boxes(landmarks: torch.Tensor, size: int, scale: float = 1.5) -> torch.Tensor:
    """[N, 68, 2] pixels -> [N, 4] integer boxes (x0, y0, x1, y1) around landmarks 48-67, ``scale`` times
    their extent, clipped to the ``size`` frame."""
    mouth = landmarks[:, list(MOUTH)].float()
    lo, hi = mouth.amin(1), mouth.amax(1)
    centre, half = (lo + hi) / 2, (hi - lo).amax(1, keepdim=True) * scale / 2 + 1
    x0y0 = (centre - half).floor().clamp(0, size - 1)
    x1y1 = (centre + half).ceil().clamp(1, size)
    return torch.cat([x0y0, x1y1], 1).long()


def box_psnr(fake: torch.Tensor, real: torch.Tensor, boxes: Sequence[Sequence[int]]) -> torch.Tensor:
    """fake, real [N, 3, S, S] in [0, 1]; boxes [N] of (x0, y0, x1, y1) -> PSNR in dB inside each box [N]."""
    return torch.stack([psnr(fake[i:i + 1, :, y0:y1, x0:x1], real[i:i + 1, :, y0:y1, x0:x1])[0]
                        for i, (x0, y0, x1, y1) in enumerate(boxes)])


def mouth_changes(model: torch.Tensor, real: torch.Tensor, boxes: Sequence[Sequence[int]],
                  frames: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """How one item's mouth changes over its frames, for the model and the target.

    Args:
        model, real: [N, 3, S, S] rendered and target frames.
        boxes: [N] mouth boxes (x0, y0, x1, y1), e.g. ``mouth_boxes(...).tolist()``.
        frames: the indices (into N) of the item's frames.

    Returns:
        Two [len(frames), 3, h, w]: the pixels of one box (the mean of the frames' boxes, rounded)
        minus their mean over the frames.
    """
    x0, y0, x1, y1 = torch.tensor([boxes[j] for j in frames], dtype=torch.float).mean(0).round().int().tolist()
    crops = [img[list(frames), :, y0:y1, x0:x1] for img in (model, real)]
    return tuple(c - c.mean(0, keepdim=True) for c in crops)


def motion_sums(model_change: torch.Tensor, target_change: torch.Tensor) -> tuple[float, float, float]:
    """One item's changes (:func:`mouth_changes`) -> the sums (model·target, model², target²) that
    :func:`motion_scores` turns into correlation and gain once summed over items."""
    return (float((model_change * target_change).sum()), float(model_change.square().sum()),
            float(target_change.square().sum()))


def motion_scores(model_target: float, model_model: float, target_target: float) -> tuple[float, float]:
    """Summed products -> (correlation in [-1, 1], gain >= 0) of the model's mouth change with the target's."""
    corr = model_target / max((model_model * target_target) ** 0.5, 1e-12)
    gain = (model_model / max(target_target, 1e-12)) ** 0.5
    return corr, gain
