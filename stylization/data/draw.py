"""Drawing landmarks (OpenCV, RGB uint8): previews for logs, and the facial map a generator reads."""

from __future__ import annotations

import numpy as np

from stylization.constants import (INNER_LIPS, JAW, LEFT_BROW, LEFT_EYE, NOSE_BASE, NOSE_BRIDGE, OUTER_LIPS, RIGHT_BROW,
                                   RIGHT_EYE)

# The facial map's "preset semantic sequence" (Pham et al., CVPRW 2024, §3.4): (iBUG indices in drawing
# order, closed polygon?, RGB colour). Groups are drawn in this order, so where two overlap the later wins.
FACIAL_MAP_GROUPS: tuple[tuple[tuple[int, ...], bool, tuple[int, int, int]], ...] = (
    (JAW, False, (255, 255, 255)),
    (RIGHT_BROW, False, (255, 0, 0)),
    (LEFT_BROW, False, (0, 255, 0)),
    (NOSE_BRIDGE, False, (0, 0, 255)),
    (NOSE_BASE, False, (255, 255, 0)),
    (RIGHT_EYE, True, (255, 0, 255)),
    (LEFT_EYE, True, (0, 255, 255)),
    (OUTER_LIPS, True, (255, 128, 0)),
    (INNER_LIPS, True, (128, 0, 255)),
)
_SHIFT = 4  # cv2 fractional bits: endpoints are drawn to 1/16 px
_MAX_COORD = 1e6  # px; finite points farther out are clipped there so the fixed-point ints cannot overflow


def landmark_canvas(landmark_sets, colors, size: int, scale: float = 1.0) -> np.ndarray:
    """Draw several [68, 2] landmark sets on one white size x size RGB image.

    ``scale`` multiplies the coordinates (e.g. 128 / 256 to draw 256-pixel landmarks small).
    """
    import cv2

    canvas = np.full((size, size, 3), 255, np.uint8)
    for points, color in zip(landmark_sets, colors):
        pts = np.asarray(points, np.float64) * scale
        for x, y in pts:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(canvas, (int(round(x)), int(round(y))), max(1, size // 96), tuple(int(c) for c in color), -1,
                           lineType=cv2.LINE_AA)
    return canvas


def facial_map(landmarks, size: int, scale: float = 1.0) -> np.ndarray:
    """The facial map of one face: landmarks [68, 2] (x, y in px, multiplied by ``scale``) -> RGB uint8
    [size, size, 3].

    Consecutive points of each group of :data:`FACIAL_MAP_GROUPS` are joined by anti-aliased lines in the
    group's colour on black; eyes and lips are closed (their last point joins their first). Lines are
    ``max(1, round(size / 256))`` px thick (2 px at the paper's 512). A segment with a non-finite end
    is skipped, so a NaN point removes its two segments and nothing else.
    """
    import cv2

    pts = np.asarray(landmarks, np.float64) * scale
    if pts.shape != (68, 2):
        raise ValueError(f"facial_map: landmarks must be [68, 2] (x, y), got shape {pts.shape}")
    finite = np.isfinite(pts).all(axis=1)
    fixed = np.round(np.clip(np.nan_to_num(pts), -_MAX_COORD, _MAX_COORD) * (1 << _SHIFT)).astype(np.int64)
    thickness = max(1, int(round(size / 256)))
    canvas = np.zeros((size, size, 3), np.uint8)
    for indices, closed, color in FACIAL_MAP_GROUPS:
        ends = list(zip(indices[:-1], indices[1:])) + ([(indices[-1], indices[0])] if closed else [])
        for a, b in ends:
            if finite[a] and finite[b]:
                cv2.line(canvas, tuple(int(v) for v in fixed[a]), tuple(int(v) for v in fixed[b]), color, thickness,
                         lineType=cv2.LINE_AA, shift=_SHIFT)
    return canvas
