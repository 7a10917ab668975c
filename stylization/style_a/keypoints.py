"""Spatial keypoint conditioning for Style-A models trained from scratch (not in the paper).

The paper's renderer sees the coefficients only through the motion descriptor, a global vector
that drives AdaIN in the warping net and the refinement network. Trained from scratch for a few
CPU minutes, that path barely moves the mouth (docs/results.md). With ``keypoints=True`` the
generator also sees the face model's 68 keypoints drawn as heatmaps:

* :func:`keypoint_heatmaps` — landmarks [N, 68, 2] (pixels of the content frame) -> [N, 24, s, s]
  Gaussian heatmaps: one channel for each of the 20 mouth points (the lips are what moves) and one
  for each of the jaw, brows, nose and eyes (the maximum over their points);
* the warping net reads the source image with the target's heatmaps, so the flow knows where the
  points must go (:class:`~stylization.style_a.motion.MotionGenerator`; the source's own points
  are in its image and, for the content encoder, its parsing map);
* :class:`KeypointSFT` modulates the generator's features at 64 and 128 px with the target's
  heatmaps (drawn at 64 px), ``f · (1 + scale) + shift``: the layers that draw the mouth see where
  the lips are, which a warp of a closed source mouth cannot open into a dark interior. Its output convolutions
  start at zero, so an untrained one changes nothing.

At inference the keypoints are the face model's projection of the coefficients being rendered,
mapped into the crop (:meth:`stylization.data.render_inputs.RenderInputs.drive_keypoints`); in
training and evaluation, the corpus's landmarks of the target frames (on the synthetic corpus,
that same projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylization.constants import BROWS, EYES, JAW, MOUTH, NOSE

KEYPOINT_GROUPS: tuple[tuple[int, ...], ...] = tuple((i,) for i in MOUTH) + (JAW, BROWS, NOSE, EYES)
KEYPOINT_CHANNELS = len(KEYPOINT_GROUPS)  # 24


def keypoint_heatmaps(landmarks: torch.Tensor, frame_size: int, size: int, sigma: float = 1.0) -> torch.Tensor:
    """Landmarks [N, 68, 2] (x, y in pixels of a ``frame_size`` frame) -> heatmaps [N, 24, size, size].

    Each point is a Gaussian of standard deviation ``sigma · size / 64`` pixels of the map (1 px at
    64, 2 px at 128) and peak 1, centred where the point falls on the map (pixel centres at
    integer coordinates, as the landmarks'); channels follow :data:`KEYPOINT_GROUPS`.
    """
    pts = landmarks.float() * (size / frame_size) + 0.5 * (size / frame_size - 1)  # pixel-centre convention
    axis = torch.arange(size, device=landmarks.device, dtype=torch.float32)
    s = float(sigma) * size / 64
    gx = torch.exp(-(axis - pts[..., 0:1]) ** 2 / (2 * s * s))  # [N, 68, size]
    gy = torch.exp(-(axis - pts[..., 1:2]) ** 2 / (2 * s * s))
    maps = gy[..., :, None] * gx[..., None, :]  # [N, 68, size, size]
    return torch.stack([maps[:, list(g)].amax(1) for g in KEYPOINT_GROUPS], 1)


class KeypointSFT(nn.Module):
    """Target heatmaps [N, 24, s, s] -> (scale, shift) [N, channels, s, s] for a feature map of side s.

    A 3×3 convolution (24 -> ``hidden``) and a LeakyReLU at the heatmaps' size, then a 1×1 one
    (-> 2 · channels) at the feature's (a 3×3 body at 128 px made a CPU step 15 % slower); the last
    starts at zero, so ``f · (1 + scale) + shift`` is the identity until it learns.
    """

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(KEYPOINT_CHANNELS, hidden, 3, 1, 1), nn.LeakyReLU(0.2))
        self.out = nn.Conv2d(hidden, 2 * channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feature: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
        """feature [N, channels, S, S], heatmaps [N, 24, s, s] -> the modulated feature; the hidden
        map is computed at s and resized bilinearly to S (heatmaps at 64 serve a 128 px feature)."""
        hidden = self.body(heatmaps.to(feature.dtype))
        if hidden.shape[-1] != feature.shape[-1]:
            hidden = F.interpolate(hidden, size=feature.shape[-2:], mode="bilinear", align_corners=False)
        scale, shift = self.out(hidden).chunk(2, dim=1)
        return feature * (1 + scale) + shift
