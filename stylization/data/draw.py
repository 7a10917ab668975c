"""Drawing landmarks for logs and previews (OpenCV, RGB uint8)."""

from __future__ import annotations

import numpy as np


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
