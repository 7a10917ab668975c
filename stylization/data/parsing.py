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

N_CLASSES = 19
SKIN, BROW_A, BROW_B, EYE_A, EYE_B, NOSE, MOUTH, UPPER_LIP, LOWER_LIP = 1, 2, 3, 4, 5, 10, 11, 12, 13
LOGIT_SCALE = 16.0  # one-hot · 16, so that parsing / 16 (VToonify's input scaling) is one-hot


def _poly(img: np.ndarray, pts: np.ndarray, label: int) -> None:
    cv2.fillPoly(img, [np.round(pts * 4).astype(np.int32)], label, lineType=cv2.LINE_8, shift=2)


def landmark_labels(landmarks: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """landmarks [68, 2] (x, y pixels; multiplied by ``scale``) -> label map uint8 [size, size]."""
    p = np.asarray(landmarks, np.float64) * scale
    labels = np.zeros((size, size), np.uint8)
    jaw = p[0:17]
    brows = p[17:27]
    lift = 0.35 * (jaw[8, 1] - brows[:, 1].min())  # forehead height above the brows
    forehead = brows[::-1] - np.array([0.0, lift])
    _poly(labels, np.concatenate([jaw, forehead]), SKIN)
    _poly(labels, cv2.convexHull(p[[27, 31, 32, 33, 34, 35]].astype(np.float32))[:, 0], NOSE)
    width = max(1, int(round(0.04 * (jaw[16, 0] - jaw[0, 0]))))
    for pts, label in ((p[17:22], BROW_A), (p[22:27], BROW_B)):
        cv2.polylines(labels, [np.round(pts * 4).astype(np.int32)], False, label, thickness=width, shift=2)
    _poly(labels, p[36:42], EYE_A)
    _poly(labels, p[42:48], EYE_B)
    _poly(labels, np.concatenate([p[48:55], p[64:59:-1]]), UPPER_LIP)
    _poly(labels, np.concatenate([p[54:60], p[48:49], p[60:61], p[67:63:-1]]), LOWER_LIP)
    _poly(labels, p[60:68], MOUTH)
    return labels


def landmark_parsing(landmarks: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """landmarks [68, 2] -> float32 [19, size, size]: one-hot classes · 16 (BiSeNet-logit-like)."""
    labels = landmark_labels(landmarks, size, scale)
    return (np.eye(N_CLASSES, dtype=np.float32)[labels] * LOGIT_SCALE).transpose(2, 0, 1).copy()
