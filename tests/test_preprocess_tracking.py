"""Face tracking over a clip and the clip's crop square (stylization/preprocess/tracking.py)."""

import numpy as np
import pytest

from stylization.data.alignment import crop_box
from stylization.preprocess.faces import Detection
from stylization.preprocess.tracking import (SkipClip, clip_box, crop_frame, crop_matrix, crop_region, track_face,
                                             transform_points)


def face_at(x: float, y: float, size: float = 40.0) -> np.ndarray:
    """68 landmarks spread over a size×size square whose top-left corner is (x, y)."""
    g = np.linspace(0, 1, 68)
    return np.stack([x + size * g, y + size * (g * 7 % 1)], 1).astype(np.float32)


class ScriptedDetector:
    """Finds a face moving right by 1 px per frame, except in ``missing`` frames; counts its calls."""

    def __init__(self, missing=(), second=None):
        self.missing, self.second, self.calls, self.near = set(missing), second or {}, [], 0

    def detect(self, frame, upsample=1):
        if frame.shape[0] != 8:  # the search near the last box (tracking.detect_near) finds nothing here
            self.near += 1
            return None
        t = int(frame[0, 0, 0])
        self.calls.append(t)
        if t in self.missing:
            return None
        lm = face_at(10 + t, 20)
        ratio = self.second.get(t, 0.0)
        return Detection(lm, np.concatenate([lm.min(0), lm.max(0)]), 2 if ratio else 1, ratio)


def frames(n):
    """Frames whose first pixel says their index (what ScriptedDetector reads)."""
    for t in range(n):
        f = np.zeros((8, 8, 3), np.uint8)
        f[0, 0, 0] = t
        yield f


def test_detects_every_kth_frame_and_interpolates_between():
    det = ScriptedDetector()
    track = track_face(frames(23), det, every=5, smooth=1)
    assert det.calls == [0, 5, 10, 15, 20]
    assert track.detected.tolist() == [t % 5 == 0 and t <= 20 for t in range(23)]
    # the face moves 1 px per frame: interpolation recovers the frames in between, held after the last
    expected = np.array([crop_box(face_at(10 + min(t, 20), 20)) for t in range(23)])
    np.testing.assert_allclose(track.squares, expected, atol=1e-4)
    assert track.rects[7, 0] == pytest.approx(17.0)


def test_a_missed_detection_is_looked_up_frame_by_frame_and_tolerated_when_short():
    det = ScriptedDetector(missing={9, 10, 11})
    track = track_face(frames(30), det, every=5, max_lost=3, smooth=1)
    # frame 10 failed: 9, 8, ... were checked back to the last face, 11, 12 forward until it came back
    assert det.calls == [0, 5, 10, 9, 8, 11, 12, 15, 20, 25]
    assert not track.detected[9:12].any() and track.detected[[8, 12]].all()


def test_a_face_lost_too_long_or_a_second_face_skips_the_clip():
    with pytest.raises(SkipClip, match="face lost for more than 3 frames \\(from frame 9\\)"):
        track_face(frames(30), ScriptedDetector(missing={9, 10, 11, 12}), every=5, max_lost=3)
    with pytest.raises(SkipClip, match="face lost"):  # lost at the end of the clip
        track_face(frames(30), ScriptedDetector(missing=set(range(21, 30))), every=5, max_lost=3)
    with pytest.raises(SkipClip, match="no face found"):
        track_face(frames(3), ScriptedDetector(missing={0, 1, 2}), every=5, max_lost=5)
    with pytest.raises(SkipClip, match="no face found in the first 4 frames"):
        track_face(frames(30), ScriptedDetector(missing=set(range(30))), every=5, max_lost=3)
    with pytest.raises(SkipClip, match="several faces \\(frame 15"):
        track_face(frames(30), ScriptedDetector(second={15: 0.8}), every=5)
    track_face(frames(30), ScriptedDetector(second={15: 0.2}), every=5)  # a small face in the background is fine


def test_clip_box_is_the_square_around_the_union():
    squares = np.array([[50, 60, 20], [70, 60, 20], [60, 80, 40]], np.float32)
    # union: x 40..80, y 50..100 -> centre (60, 75), side 50
    assert clip_box(squares) == pytest.approx((60.0, 75.0, 50.0))


def test_crop_frame_cuts_the_square_and_pads_with_edge_pixels():
    h, w = 60, 80
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = np.arange(w)[None]  # x in red
    img[:, :, 1] = np.arange(h)[:, None]  # y in green
    box = (30.0, 20.0, 20.0)  # x 20..40, y 10..30: inside
    assert crop_region(box) == (20, 10, 20)
    crop = crop_frame(img, box, 20)  # same size: an exact cut
    np.testing.assert_array_equal(crop, img[10:30, 20:40])
    m = crop_matrix(box, 20)
    np.testing.assert_allclose(transform_points(np.array([[20.0, 10.0], [39.0, 29.0]]), m), [[0, 0], [19, 19]])
    edge = crop_frame(img, (5.0, 5.0, 20.0), 20)  # x -5..15, y -5..15: the outside repeats the edge
    assert (edge[:5, :, 1] == 0).all() and (edge[:, :5, 0] == 0).all()
    np.testing.assert_array_equal(edge[5:, 5:], img[:15, :15])
    assert crop_frame(img, box, 40).shape == (40, 40, 3)
    with pytest.raises(SkipClip, match="outside"):
        crop_frame(img, (500.0, 500.0, 20.0), 20)


class CroppedFaceDetector:
    """Finds the face only when it is large: on the 320 px search square, not on the small frame."""

    def __init__(self, face):
        self.face = face

    def detect(self, frame, upsample=1):
        if frame.shape[0] != 320:
            return None
        return Detection(self.face, np.concatenate([self.face.min(0), self.face.max(0)]), 1, 0.0)


def test_detect_near_maps_a_face_found_in_the_search_square_back():
    from stylization.preprocess.tracking import detect_near

    frame = np.zeros((100, 120, 3), np.uint8)
    rect = np.array([40, 30, 60, 50], np.float32)  # a 20 px box: the search square is 40 px around (50, 40)
    face_in_square = face_at(100, 120, 80)  # pixels of the 320 px square (8 times the frame's scale)
    found = detect_near(CroppedFaceDetector(face_in_square), frame, rect)
    expected = face_in_square / 8 + np.array([30, 20])
    np.testing.assert_allclose(found.landmarks, expected, atol=1e-4)
    np.testing.assert_allclose(found.rect, np.concatenate([expected.min(0), expected.max(0)]), atol=1e-4)
    assert found.rect[:2] == pytest.approx([42.5, 35.0])
    assert detect_near(CroppedFaceDetector(face_in_square), frame, np.array([900, 900, 920, 920])) is None
