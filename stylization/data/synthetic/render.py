"""Drawing a recognisable face from its 68 projected keypoints, fast, with OpenCV.

Layers, back to front: background, hair behind the head, neck, ears, skin (jaw + a forehead
built above the brows), hair fringe, eyes (white, iris clipped to the lids, lid lines),
brows, nose, lips, and an inner mouth with teeth that shows as the lips part. Polygons are
drawn with 4 bits of sub-pixel precision and anti-aliasing.

Strokes sit where the iBUG 68-point convention (the one dlib's and FAN's predictors learned) puts
their points, so a detector run on a frame finds the corpus's own landmarks: the brow points on the
brow's upper edge, the nose-base points (31-35) on the lower edge of the nose's shadow, the jaw
points on a shaded jaw line that separates the chin from the neck. Drawn this way, dlib's points
are within 1.7 px of the known ones on average at 256 px (2.1 px with the brows centred on their
points, a lighter jaw line and a single nose-base line; docs/results.md, issue 15).
"""

from __future__ import annotations

import cv2
import numpy as np

from stylization.constants import (BROWS, INNER_LIPS, JAW, LEFT_BROW, LEFT_EYE, NOSE_BASE, NOSE_BRIDGE, OUTER_LIPS,
                                   RIGHT_BROW, RIGHT_EYE)
from stylization.data.synthetic.profiles import Speaker

SHIFT = 4
SUB = 1 << SHIFT


def _p(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * SUB).astype(np.int32).reshape(-1, 1, 2)


def _fill(img, points, colour):
    cv2.fillPoly(img, [_p(points)], colour, lineType=cv2.LINE_AA, shift=SHIFT)


def _line(img, points, colour, thickness, closed=False):
    cv2.polylines(img, [_p(points)], closed, colour, max(1, int(round(thickness))), lineType=cv2.LINE_AA, shift=SHIFT)


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


def _clipped(img, polygon, draw) -> None:
    """Apply ``draw(layer)`` to a copy of ``img`` and keep it only inside ``polygon``."""
    x0, y0 = np.floor(polygon.min(0)).astype(int) - 2
    x1, y1 = np.ceil(polygon.max(0)).astype(int) + 3
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    layer = img[y0:y1, x0:x1].copy()
    draw(layer, polygon - [x0, y0])
    mask = np.zeros(layer.shape[:2], np.uint8)
    _fill(mask, polygon - [x0, y0], 255)
    alpha = mask[..., None].astype(np.float32) / 255.0
    img[y0:y1, x0:x1] = (alpha * layer + (1 - alpha) * img[y0:y1, x0:x1]).astype(np.uint8)


def render_face(landmarks: np.ndarray, speaker: Speaker, resolution: int) -> np.ndarray:
    """[68, 2] pixel landmarks (y down) -> RGB uint8 [R, R, 3] image of the speaker's face."""
    lm = np.asarray(landmarks, np.float64)
    img = np.empty((resolution, resolution, 3), np.uint8)
    ramp = np.linspace(1.08, 0.85, resolution)[:, None, None]
    img[:] = np.clip(np.array(speaker.background)[None, None] * ramp, 0, 255).astype(np.uint8)
    skin, hair = speaker.skin, speaker.hair
    chin, bridge = lm[8], lm[27]
    up = (bridge - chin) / (np.linalg.norm(bridge - chin) + 1e-6)
    face_h = np.linalg.norm(bridge - chin)
    centre = 0.5 * (lm[0] + lm[16])
    forehead = bridge + (lm[list(BROWS)][::-1] - bridge) * 1.08 + up * 0.42 * face_h
    crown = centre + (forehead - centre) * 1.12 + up * 0.12 * face_h

    if speaker.hair_style == 1:  # long hair falls behind the head
        sides = centre + (lm[[16, 14, 12, 4, 2, 0]] - centre) * 1.25 - up * 0.25 * face_h
        _fill(img, np.concatenate([crown, sides]), _shade(hair, 0.85))
    if speaker.hair_style == 2:  # a bun on top
        bun = crown[len(crown) // 2] + up * 0.12 * face_h
        cv2.circle(img, tuple(int(v) for v in np.round(bun * SUB)), int(0.2 * face_h * SUB), hair, -1, cv2.LINE_AA,
                   SHIFT)
    neck_w = 0.55 * np.linalg.norm(lm[4] - lm[12])
    neck_top = 0.5 * (lm[5] + lm[11])
    side = np.array([up[1], -up[0]])
    neck = [neck_top - side * neck_w / 2, neck_top + side * neck_w / 2,
            neck_top + side * neck_w / 2 - up * resolution, neck_top - side * neck_w / 2 - up * resolution]
    _fill(img, np.array(neck), _shade(skin, 0.8))
    for i, j in ((1, 3), (15, 13)):  # ears
        ear = lm[i] + (lm[i] - lm[j]) * 0.25
        axes = (int(0.06 * face_h * SUB), int(0.12 * face_h * SUB))
        angle = float(np.degrees(np.arctan2(up[0], -up[1])))
        cv2.ellipse(img, tuple(int(v) for v in np.round(ear * SUB)), axes, angle, 0, 360, _shade(skin, 0.9), -1,
                    cv2.LINE_AA, SHIFT)
    jaw = lm[list(JAW)]
    face = np.concatenate([jaw, forehead])
    _fill(img, face, skin)
    _line(img, jaw, _shade(skin, 0.6), 0.012 * resolution)
    # The fringe reaches down over the top of the forehead, with a gently waved edge.
    wave = 0.05 * face_h * np.sin(np.linspace(0, 3 * np.pi, len(forehead)))[:, None]
    fringe_low = forehead - up * (0.14 * face_h + wave)
    _fill(img, np.concatenate([crown, fringe_low[::-1]]), hair)

    for eye in (lm[list(RIGHT_EYE)], lm[list(LEFT_EYE)]):
        _fill(img, eye, (236, 236, 232))
        width = np.linalg.norm(eye[3] - eye[0])

        def iris(layer, poly, width=width):
            c = poly.mean(0)
            cv2.circle(layer, tuple(int(v) for v in np.round(c * SUB)), int(0.36 * width * SUB), speaker.iris, -1,
                       cv2.LINE_AA, SHIFT)
            cv2.circle(layer, tuple(int(v) for v in np.round(c * SUB)), int(0.16 * width * SUB), (20, 20, 20), -1,
                       cv2.LINE_AA, SHIFT)

        if np.linalg.norm(eye[1] - eye[5]) > 0.05 * width:
            _clipped(img, eye, iris)
        _line(img, eye[[0, 1, 2, 3]], _shade(hair, 0.5), 0.012 * resolution)
        _line(img, eye[[3, 4, 5, 0]], _shade(skin, 0.7), 0.006 * resolution)
    brow_w = 0.012 * resolution
    for brow in (lm[list(RIGHT_BROW)], lm[list(LEFT_BROW)]):  # the points on the upper edge
        _line(img, brow - up * brow_w / 2, _shade(hair, 0.7), brow_w)
    _line(img, lm[list(NOSE_BRIDGE)], _shade(skin, 0.85), 0.008 * resolution)
    base = lm[list(NOSE_BASE)]  # the shadow under the nose, its lower edge on the points
    _fill(img, np.concatenate([base, base[::-1] + up * 0.05 * face_h]), _shade(skin, 0.6))

    _fill(img, lm[list(OUTER_LIPS)], speaker.lips)
    inner = lm[list(INNER_LIPS)]
    opening = np.linalg.norm(lm[62] - lm[66])
    if opening > 0.01 * face_h:
        def mouth(layer, poly):
            _fill(layer, poly, (70, 20, 30))
            teeth = np.concatenate([poly[0:5], poly[[4, 3, 2, 1, 0]] - up * 0.35 * opening])
            _fill(layer, teeth, (240, 238, 228))

        _clipped(img, inner, mouth)
    _line(img, np.concatenate([lm[60:65], lm[[64, 65, 66, 67, 60]]]), _shade(speaker.lips, 0.6), 0.006 * resolution)
    return img
