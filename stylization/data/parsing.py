"""Face parsing maps drawn from 68 landmarks, in BiSeNet's 19-class (CelebAMask-HQ) layout.

The content encoder reads RGB plus 19 parsing channels. With the official BiSeNet weights they
are its logits; without them (the CPU-sized configuration, the synthetic corpus) this module
draws the classes the 68 iBUG landmarks determine and returns them one-hot, scaled so that the
encoder's usual ``/ 16`` gives 0/1 channels.

Classes drawn: 1 skin (jaw hull extended up to a forehead), 2/3 brows, 4/5 eyes, 10 nose,
11 inner mouth, 12 upper lip, 13 lower lip; everything else is 0 (background).
"""

from __future__ import annotations

import cv2
import numpy as np

from stylization.constants import (BROWS, INNER_LIPS, JAW, LEFT_BROW, LEFT_EYE, NOSE_BASE, NOSE_BRIDGE, RIGHT_BROW,
                                   RIGHT_EYE)
from stylization.constants import PARSING_CLASSES as N_CLASSES  # the name this module has always exported

SKIN, BROW_A, BROW_B, EYE_A, EYE_B, NOSE, MOUTH, UPPER_LIP, LOWER_LIP = 1, 2, 3, 4, 5, 10, 11, 12, 13
LOGIT_SCALE = 16.0  # one-hot · 16, so that parsing / 16 (VToonify's input scaling) is one-hot


def _poly(img: np.ndarray, pts: np.ndarray, label: int) -> None:
    cv2.fillPoly(img, [np.round(pts * 4).astype(np.int32)], label, lineType=cv2.LINE_8, shift=2)


def landmark_labels(landmarks: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """landmarks [68, 2] (x, y pixels; multiplied by ``scale``) -> label map uint8 [size, size]."""
    p = np.asarray(landmarks, np.float64) * scale
    labels = np.zeros((size, size), np.uint8)
    jaw = p[list(JAW)]
    brows = p[list(BROWS)]
    lift = 0.35 * (jaw[8, 1] - brows[:, 1].min())  # forehead height above the brows
    forehead = brows[::-1] - np.array([0.0, lift])
    _poly(labels, np.concatenate([jaw, forehead]), SKIN)
    _poly(labels, cv2.convexHull(p[[NOSE_BRIDGE[0], *NOSE_BASE]].astype(np.float32))[:, 0], NOSE)
    width = max(1, int(round(0.04 * (jaw[16, 0] - jaw[0, 0]))))
    for pts, label in ((p[list(RIGHT_BROW)], BROW_A), (p[list(LEFT_BROW)], BROW_B)):
        cv2.polylines(labels, [np.round(pts * 4).astype(np.int32)], False, label, thickness=width, shift=2)
    _poly(labels, p[list(RIGHT_EYE)], EYE_A)
    _poly(labels, p[list(LEFT_EYE)], EYE_B)
    _poly(labels, np.concatenate([p[48:55], p[64:59:-1]]), UPPER_LIP)
    _poly(labels, np.concatenate([p[54:60], p[48:49], p[60:61], p[67:63:-1]]), LOWER_LIP)
    _poly(labels, p[list(INNER_LIPS)], MOUTH)
    return labels


def landmark_parsing(landmarks: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """landmarks [68, 2] -> float32 [19, size, size]: one-hot classes · 16 (BiSeNet-logit-like)."""
    labels = landmark_labels(landmarks, size, scale)
    return (np.eye(N_CLASSES, dtype=np.float32)[labels] * LOGIT_SCALE).transpose(2, 0, 1).copy()
