"""Head pose for a rendered video: pose rows from a pose source, and the pose track of T frames.

A *pose source* is a video (each frame: the largest face's landmarks -> the content crop -> a fit
of the face model, :func:`~stylization.preprocess.fitting.fit_coefficients`) or a coefficient
``.npy`` ([N, 257|260] or one row). *Pose rows* are [N, 6]: angle (3, radians: pitch, yaw, roll)
then trans (3, face-model units), the coefficient columns ``angle`` and ``trans``.

A *pose track* is [T, 9]: angle, trans and crop (s, tx, ty) for each of T output frames at 25 fps:
the source face's pose held still, moved by a gentle procedural motion, or moved by a pose
source's motion relative to its first frame (looped back and forth when it is shorter).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from stylization.constants import COEFF_DIM, COEFF_SLICES, FPS
from stylization.data.coeffs import validate_coeffs
from stylization.data.face_model import FaceModel
from stylization.errors import ConfigError, DataError

POSE_MOTIONS = ("still", "gentle")
FIT_STEPS = 40  # per pose-video frame: the pose converges well before the 60 of a source photo's fit


def load_coeff_file(path: str) -> np.ndarray:
    """A .npy of coefficients [T, 257|260] (or one row) -> float32 [T, 260] (crop zero when absent)."""
    if not os.path.isfile(path):
        raise DataError("coefficient file not found", path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as exc:  # what np.load raises for damaged or pickled files
        raise DataError(f"not a readable .npy array ({exc})", path) from None
    arr = arr[None] if arr.ndim == 1 else arr
    validate_coeffs(arr, path)
    out = np.zeros((len(arr), COEFF_DIM), np.float32)
    out[:, : arr.shape[1]] = arr
    return out


def pose_rows(coeffs: np.ndarray) -> np.ndarray:
    """Coefficients [N, 257|260] -> pose rows [N, 6] (angle, trans)."""
    return np.concatenate([coeffs[:, COEFF_SLICES["angle"]], coeffs[:, COEFF_SLICES["trans"]]], 1)


def video_coefficients(path: str, detector: Callable, fit: Callable, crop_pixels: int, what: str = "video") -> np.ndarray:
    """A video's frames (resampled to 25 fps) -> coefficients [N, 260] of its largest face.

    ``detector(frame, source)`` returns a :class:`~stylization.preprocess.faces.Face`; each frame's
    landmarks are moved into the content crop (``crop_pixels`` square, the corpus framing) and
    ``fit(crop, crop_landmarks)`` gives the frame's row, so the rows are in the same convention as a
    photo's source coefficients.
    """
    from tqdm import tqdm

    from stylization.data.alignment import face_crop
    from stylization.data.video import read_video

    rows = []
    for frame in tqdm(read_video(path), desc=what, unit="frame"):
        crop, landmarks = face_crop(frame, detector(frame, path).landmarks, crop_pixels)
        rows.append(fit(crop, landmarks))
    return np.stack(rows).astype(np.float32)


def pose_from_video(path: str, detector: Callable, face_model: FaceModel, crop_pixels: int) -> np.ndarray:
    """A video's frames -> pose rows [N, 6] of its largest face (a quick landmark fit per frame)."""
    from stylization.preprocess.fitting import fit_coefficients

    fit = lambda crop, landmarks: fit_coefficients(face_model, landmarks, crop_pixels, steps=FIT_STEPS)  # noqa: E731
    return pose_rows(video_coefficients(path, detector, fit, crop_pixels, "pose source"))


def read_pose_source(path: str, detector: Callable, face_model: FaceModel, crop_pixels: int) -> np.ndarray:
    """A pose source (``.npy`` coefficients, else a video) -> pose rows [N, 6]."""
    if path.endswith(".npy"):
        return pose_rows(load_coeff_file(path))
    return pose_from_video(path, detector, face_model, crop_pixels)


def ping_pong(n_source: int, n_frames: int) -> np.ndarray:
    """Indices 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... of length n_frames (never out of range)."""
    if n_source <= 1:
        return np.zeros(n_frames, np.int64)
    period = 2 * n_source - 2
    k = np.arange(n_frames) % period
    return np.where(k < n_source, k, period - k)


def gentle_pose(n_frames: int, seed: int, amplitude: float = 0.04) -> np.ndarray:
    """A slow procedural head motion: [T, 3] angle offsets (radians) from two sinusoids per axis."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / FPS
    out = np.zeros((n_frames, 3), np.float32)
    for axis, scale in enumerate((0.6, 1.0, 0.3)):  # pitch, yaw, roll
        f = rng.uniform(0.15, 0.35, 2)
        phase = rng.uniform(0, 2 * np.pi, 2)
        out[:, axis] = amplitude * scale * (0.7 * np.sin(2 * np.pi * f[0] * t + phase[0])
                                            + 0.3 * np.sin(2 * np.pi * f[1] * t + phase[1]))
    return out


def check_pose_motion(motion: str) -> str:
    """``pose_motion`` must be one of :data:`POSE_MOTIONS` (ConfigError naming the key otherwise)."""
    if motion not in POSE_MOTIONS:
        raise ConfigError(f"pose_motion must be {' or '.join(POSE_MOTIONS)}, got {motion!r}")
    return motion


def pose_track(source: np.ndarray, n_frames: int, motion: str = "still", driving: np.ndarray | None = None,
               seed: int = 0) -> np.ndarray:
    """The source row [260] -> pose track [T, 9] (angle, trans, crop) for ``n_frames`` frames.

    With ``driving`` pose rows [N, 6], the track adds the driving motion relative to its first
    frame (so the source face keeps its own pose and position); otherwise ``motion`` is
    ``still`` (the source pose held) or ``gentle`` (:func:`gentle_pose` on the angles).
    """
    sl = COEFF_SLICES
    still = np.concatenate([source[sl["angle"]], source[sl["trans"]], source[sl["crop"]]])
    track = np.tile(still, (n_frames, 1)).astype(np.float32)
    if driving is not None:
        track[:, 0:6] += driving[ping_pong(len(driving), n_frames)] - driving[0]
    elif check_pose_motion(motion) == "gentle":
        track[:, 0:3] += gentle_pose(n_frames, seed)
    return track


def apply_pose(coeffs: np.ndarray, track: np.ndarray) -> np.ndarray:
    """Write a pose track [T, 9] into coefficients [T, 260] (in place; returned)."""
    coeffs[:, COEFF_SLICES["angle"]] = track[:, 0:3]
    coeffs[:, COEFF_SLICES["trans"]] = track[:, 3:6]
    coeffs[:, COEFF_SLICES["crop"]] = track[:, 6:9]
    return coeffs
