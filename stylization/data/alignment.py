"""The two face crops the models read, as pure geometry on pictures and 68 landmarks.

* :func:`face_crop` — the square crop the content encoder and motion generator read: the
  landmarks' bounding box enlarged ``CROP_SCALE`` times, its centre ``CROP_SHIFT`` of the crop
  below the crop's centre. That is the synthetic corpus's framing (measured over its frames:
  box side 0.52 of the frame, box centre at (0.50, 0.54)), and the one MEAD/HDTF processing uses.
* :func:`ffhq_align` — FFHQ's alignment (the eye-mouth quad) for pSp.

Images are RGB uint8 [H, W, 3]; landmarks are float [68, 2] pixel (x, y). Finding the landmarks
is preprocessing's job (detectors live above the models); these functions only resample.
"""

from __future__ import annotations

import cv2
import numpy as np

from stylization.constants import LEFT_EYE, RIGHT_EYE

CROP_SCALE = 1.93
CROP_SHIFT = 0.044


def crop_box(landmarks: np.ndarray, scale: float = CROP_SCALE, shift: float = CROP_SHIFT) -> tuple[float, float, float]:
    """(centre x, centre y, side) of the square crop around the landmarks."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    side = float((hi - lo).max()) * scale
    cx, cy = (lo + hi) / 2
    return float(cx), float(cy) - shift * side, side


def face_crop(image: np.ndarray, landmarks: np.ndarray, size: int, scale: float = CROP_SCALE,
              shift: float = CROP_SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """-> (crop [size, size, 3], the landmarks in the crop's pixels). Outside the picture: edge pixels."""
    cx, cy, side = crop_box(landmarks, scale, shift)
    s = size / side
    m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(image, m, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    return crop, (landmarks @ m[:, :2].T + m[:, 2]).astype(np.float32)


def ffhq_align(image: np.ndarray, landmarks: np.ndarray, size: int = 256) -> np.ndarray:
    """FFHQ alignment: an oriented square from the eye centres and mouth corners, resampled to size."""
    eye_l, eye_r = landmarks[list(RIGHT_EYE)].mean(0), landmarks[list(LEFT_EYE)].mean(0)
    mouth = (landmarks[48] + landmarks[54]) / 2
    eye_avg = (eye_l + eye_r) / 2
    eye_to_eye, eye_to_mouth = eye_r - eye_l, mouth - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y]).astype(np.float32)  # top-left, bottom-left, bottom-right
    dst = np.array([[0, 0], [0, size], [size, size]], np.float32)
    m = cv2.getAffineTransform(quad, dst)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
