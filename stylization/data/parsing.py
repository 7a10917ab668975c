"""Face parsing maps drawn from 68 landmarks, in BiSeNet's 19-class (CelebAMask-HQ) layout.

The content encoder reads RGB plus 19 parsing channels. With the official BiSeNet weights they
are its logits; without them (the CPU-sized configuration, the synthetic corpus) this module
draws the classes the 68 iBUG landmarks determine and returns them one-hot, scaled so that the
encoder's usual ``/ 16`` gives 0/1 channels.

Classes drawn: 1 skin (jaw hull extended up to a forehead), 2/3 brows, 4/5 eyes, 10 nose,
11 inner mouth, 12 upper lip, 13 lower lip; everything else is 0 (background).

It also holds the weighting mask W of the reference-frame method's style-aware photometric loss
(:data:`STYLE_REGION_WEIGHTS`), read from such a label map or from the argmax of BiSeNet's logits.
"""

from __future__ import annotations

from types import MappingProxyType

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


# W of Eq. 3 in Pham et al. (CVPRW 2024): "mouth, eyes, and skin regions are set to 5.0, 3.0, 1.0 ...
# other regions, e.g. background, 0". Mouth is the inner mouth and both lips; eyes are both eyes. Brows
# and nose count as skin: they lie inside the face, and CelebAMask-HQ's skin class has holes exactly
# there, which a weight of 0 would turn into unsupervised islands in the middle of the face. Classes not
# listed get 0: background, eyeglasses (6), ears (7, 8), earring (9), neck (14, 15), cloth, hair, hat.
STYLE_REGION_WEIGHTS = MappingProxyType({
    SKIN: 1.0, BROW_A: 1.0, BROW_B: 1.0, NOSE: 1.0,
    EYE_A: 3.0, EYE_B: 3.0,
    MOUTH: 5.0, UPPER_LIP: 5.0, LOWER_LIP: 5.0,
})


def style_weight_table() -> np.ndarray:
    """:data:`STYLE_REGION_WEIGHTS` as float32 [19]: the weight of each parsing class, 0 where unlisted."""
    table = np.zeros(N_CLASSES, np.float32)
    for label, weight in STYLE_REGION_WEIGHTS.items():
        table[label] = weight
    return table


def check_label_range(labels_min: int, labels_max: int) -> None:
    """Raise unless labels spanning [labels_min, labels_max] are all parsing classes (0..18)."""
    if labels_min < 0 or labels_max >= N_CLASSES:
        raise ValueError(f"parsing labels must lie in 0..{N_CLASSES - 1}, got values in [{labels_min}, {labels_max}]")


def style_weight_map(labels: np.ndarray) -> np.ndarray:
    """Parsing labels [H, W] (any integer shape; :func:`landmark_labels` or a BiSeNet argmax) -> float32
    weights of the same shape, from :data:`STYLE_REGION_WEIGHTS` (mouth 5, eyes 3, skin 1, others 0)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"style_weight_map: labels must be integer class ids, got dtype {labels.dtype}; "
                         "pass the argmax over the class axis of the logits, not the logits")
    if labels.size:
        check_label_range(int(labels.min()), int(labels.max()))
    return style_weight_table()[labels.astype(np.intp)]
