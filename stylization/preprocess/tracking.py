"""One face through a clip: detection on a subset of frames, tracking between them, one crop box.

Real clips are processed the way the papers' data was (FOMM's ``crop-video.py``): the face is
found over the whole clip and **one** square crop is cut from every frame, so the head moves
inside a fixed crop instead of the crop following the head. Per-frame work must stay cheap
(MEAD is about 3 million frames), so:

* :func:`track_face` runs the detector (dlib's HOG + 68 points by default) on every
  ``every``-th frame of a downscaled copy of the clip and interpolates between those frames.
  When a detection fails it looks at every frame around it to find how long the face was lost;
  a clip that loses its face for more than ``max_lost`` consecutive frames, or shows a second
  face at least half the size of the main one, raises :class:`SkipClip` with the reason.
* :func:`clip_box` turns the per-frame boxes into the clip's square: each detected frame's box is
  :func:`stylization.data.alignment.crop_box` of its landmarks (the framing the synthetic corpus
  and ``infer.py`` use), and the clip's crop is the square around the union of those boxes
  (FOMM's "tube"), so the face has the corpus's framing when the head is still and a little
  less when it moves.
* :func:`crop_frames` cuts that square out of full-resolution frames and resizes it (edge
  pixels where the square leaves the picture, never a stretch).

Boxes are (x0, y0, x1, y1) in pixels of the frame they were measured on; crop squares are
(centre x, centre y, side).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable

import cv2
import numpy as np

from stylization.data.alignment import crop_box

SECOND_FACE_RATIO = 0.5  # a second face at least this fraction of the main face's area skips the clip


class SkipClip(Exception):
    """A clip that cannot be used; ``str(exc)`` is the reason logged in ``failures.jsonl``."""


@dataclasses.dataclass
class FaceTrack:
    """The face over a clip of T frames, in pixels of the (downscaled) frames it was tracked on.

    ``rects`` [T, 4] float32: the detector's face boxes (x0, y0, x1, y1), interpolated between
    detections (they seed the landmark predictor on the crops); ``squares`` [T, 3] float32: per-frame crop squares (cx, cy, side) from the
    landmarks; ``detected`` [T] bool: frames where the detector found the face.
    """

    rects: np.ndarray
    squares: np.ndarray
    detected: np.ndarray

    def scaled(self, factor: float) -> "FaceTrack":
        """The same track in pixels of frames ``factor`` times larger."""
        return FaceTrack(self.rects * factor, self.squares * factor, self.detected)


def _interpolate(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """values [T, D] with rows valid where ``known`` [T] -> every row, linear in between, held at the ends."""
    t = np.arange(len(values))
    return np.stack([np.interp(t, t[known], values[known, d]) for d in range(values.shape[1])], 1)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over time of [T, D] (edges use the frames that exist)."""
    if window <= 1 or len(values) < 2:
        return values
    kernel = np.ones(window)
    pad = window // 2
    num = np.stack([np.convolve(np.pad(values[:, d], pad, mode="edge"), kernel, "valid") for d in range(values.shape[1])], 1)
    return num[: len(values)] / window


def track_face(frames: Iterable[np.ndarray], detector, every: int = 5, max_lost: int = 5,
               smooth: int = 5, upsample: int = 1) -> FaceTrack:
    """Track the largest face over ``frames`` (RGB uint8 [H, W, 3], any iterable, consumed once).

    ``detector`` is a :class:`stylization.preprocess.faces.LandmarkDetector` (its ``detect(frame,
    upsample)`` gives the largest face's landmarks and box, or None). Only a ring buffer of
    ``every`` frames is held, so clips of any length stream through. ``smooth``: frames of the
    centred moving average over the interpolated boxes.

    Raises :class:`SkipClip` when no frame has a face, the face is lost for more than
    ``max_lost`` consecutive frames, or a second face of at least :data:`SECOND_FACE_RATIO` of the
    main face's area appears.
    """
    rects, squares, found = [], [], []
    buffer: collections.deque = collections.deque(maxlen=max(every, 1))
    lost_since: int | None = None  # first frame of the current run without a face

    last_rect: list = [None]  # the latest box found, for the search near it

    def run(t: int, frame: np.ndarray) -> bool:
        face = detector.detect(frame, upsample)
        if face is None and last_rect[0] is not None:
            face = detect_near(detector, frame, last_rect[0])
        if face is None:
            return False
        last_rect[0] = face.rect
        if face.n_faces > 1 and face.second_ratio >= SECOND_FACE_RATIO:
            raise SkipClip(f"several faces (frame {t}: {face.n_faces} faces, the second "
                           f"{face.second_ratio:.0%} of the main one's area)")
        rects[t], squares[t], found[t] = face.rect, np.array(crop_box(face.landmarks)), True
        return True

    t = -1
    for t, frame in enumerate(frames):
        rects.append(np.full(4, np.nan))
        squares.append(np.full(3, np.nan))
        found.append(False)
        buffer.append((t, frame))
        if lost_since is None and t % every:
            continue  # between detections: interpolated later
        if run(t, frame):
            lost_since = None
        elif lost_since is None:
            # lost somewhere since the last detection: look back for the last frame with the face
            lost_since = t
            for s_, earlier in reversed(list(buffer)[:-1]):
                if found[s_] or run(s_, earlier):
                    break
                lost_since = s_
        if lost_since is not None and t - lost_since + 1 > max_lost:
            if not any(found):
                raise SkipClip(f"no face found in the first {t + 1} frames")
            raise SkipClip(f"face lost for more than {max_lost} frames (from frame {lost_since})")
    n = t + 1
    if n == 0:
        raise SkipClip("no frames")
    found_arr = np.array(found)
    if not found_arr.any():
        raise SkipClip("no face found")
    if lost_since is not None and n - lost_since > max_lost:
        raise SkipClip(f"face lost for more than {max_lost} frames (from frame {lost_since})")
    rects_arr = _smooth(_interpolate(np.array(rects, np.float64), found_arr), smooth)
    squares_arr = _smooth(_interpolate(np.array(squares, np.float64), found_arr), smooth)
    return FaceTrack(rects_arr.astype(np.float32), squares_arr.astype(np.float32), found_arr)


def detect_near(detector, frame: np.ndarray, rect: np.ndarray, size: int = 320):
    """The face near a previous box: the square of twice the box's size around it, resized to
    ``size`` px (faces then fill about half of it, well above the detector's minimum), detected
    with upsampling, mapped back to the frame's pixels. The second-face ratio is the one inside
    the square. None when no face is found there either."""
    from stylization.preprocess.faces import Detection

    x0, y0, x1, y1 = (float(v) for v in rect)
    side = 2.0 * max(x1 - x0, y1 - y0, 1.0)
    box = ((x0 + x1) / 2, (y0 + y1) / 2, side)
    try:
        crop = crop_frame(frame, box, size)
    except SkipClip:  # the box has left the picture
        return None
    face = detector.detect(crop, 1)
    if face is None:
        return None
    back = np.linalg.inv(np.vstack([crop_matrix(box, size), [0, 0, 1]]))[:2].astype(np.float32)
    corners = transform_points(face.rect.reshape(2, 2), back).reshape(4)
    return Detection(transform_points(face.landmarks, back), corners, face.n_faces, face.second_ratio)


def clip_box(squares: np.ndarray) -> tuple[float, float, float]:
    """Per-frame crop squares [T, 3] (cx, cy, side) -> the clip's square (cx, cy, side): the square
    around the union of the frames' squares, centred on it (FOMM's tube)."""
    half = squares[:, 2:3] / 2
    lo, hi = (squares[:, :2] - half).min(0), (squares[:, :2] + half).max(0)
    centre = (lo + hi) / 2
    return float(centre[0]), float(centre[1]), float((hi - lo).max())


def crop_region(box: tuple[float, float, float]) -> tuple[int, int, int]:
    """(cx, cy, side) -> the whole-pixel square (x0, y0, n) that is cut out (it may leave the frame)."""
    cx, cy, side = box
    n = max(int(round(side)), 1)
    return int(round(cx - n / 2)), int(round(cy - n / 2)), n


def crop_matrix(box: tuple[float, float, float], size: int) -> np.ndarray:
    """The 2×3 affine that maps frame pixels into the ``size`` crop of ``box`` (cx, cy, side)."""
    x0, y0, n = crop_region(box)
    s = size / n
    return np.array([[s, 0, -s * x0], [0, s, -s * y0]], np.float32)


def crop_frame(frame: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """One RGB frame [H, W, 3] -> the [size, size, 3] crop of ``box`` (:func:`crop_region`): area
    averaging when it shrinks, bicubic when it enlarges, edge pixels where the square leaves the frame."""
    x0, y0, n = crop_region(box)
    h, w = frame.shape[:2]
    inner = frame[max(y0, 0):min(y0 + n, h), max(x0, 0):min(x0 + n, w)]
    if inner.size == 0:
        raise SkipClip(f"the crop square ({x0}, {y0}, side {n}) lies outside the {w}x{h} frame")
    pads = (max(-y0, 0), max(y0 + n - h, 0), max(-x0, 0), max(x0 + n - w, 0))
    if any(pads):
        inner = cv2.copyMakeBorder(inner, *pads, borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(inner, (size, size), interpolation=cv2.INTER_AREA if n > size else cv2.INTER_CUBIC)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[..., 2] pixels -> the same points under the 2×3 affine ``matrix``."""
    return (np.asarray(points, np.float32) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
