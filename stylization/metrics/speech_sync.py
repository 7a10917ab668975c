"""Does a rendered mouth open when the speech is loud? A landmark-based sync figure.

The demo's ``sync`` figure: the Pearson correlation, over a video's frames, between

* the inner-lip gap measured on the *output frames* by a landmark detector (dlib's 68 points in
  ``scripts/demo.py``, the detector the pipeline uses): the mean distance of the facing inner-lip
  points (:data:`~stylization.constants.INNER_LIP_PAIRS`) over the mouth width (48 to 54), so it
  does not depend on the frame size;
* the audio's loudness envelope: the RMS of the samples of each video frame's interval
  (centred on the frame's time), lightly smoothed over 3 frames, as speech opens the jaw for
  vowels and closes it in pauses.

A still mouth scores ~0 (or NaN when the gap never changes); a mouth that opens with the voice
scores high. The synthetic corpus's clips score 0.5–0.8 with their own landmarks
(``tests/test_speech_sync.py``). This is no SyncNet (issue 16 brings LSE-C / LSE-D): it checks that
the mouth moves with the speech, not the phonemes' shapes.
"""

from __future__ import annotations

import numpy as np

from stylization.constants import FPS, SAMPLE_RATE
from stylization.data.render_pairs import inner_lip_distance

MOUTH_CORNERS = (48, 54)


def inner_lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """[T, 68, 2] landmarks (pixels) -> [T] inner-lip gap as a fraction of the mouth width."""
    lm = np.asarray(landmarks, np.float64)
    width = np.linalg.norm(lm[:, MOUTH_CORNERS[0]] - lm[:, MOUTH_CORNERS[1]], axis=-1)
    return inner_lip_distance(lm) / np.maximum(width, 1e-6)


def loudness_envelope(wav: np.ndarray, n_frames: int, fps: float = FPS, sample_rate: int = SAMPLE_RATE,
                      smooth: int = 3) -> np.ndarray:
    """Mono audio [S] -> [n_frames] RMS of each frame's interval (centred on frame t's time t / fps),
    moving-averaged over ``smooth`` frames (1: none)."""
    wav = np.asarray(wav, np.float64)
    hop = sample_rate / fps
    centres = (np.arange(n_frames) + 0.5) * hop
    lo = np.clip(np.round(centres - hop / 2).astype(int), 0, len(wav))
    hi = np.clip(np.round(centres + hop / 2).astype(int), 0, len(wav))
    squares = np.concatenate([[0.0], np.cumsum(wav ** 2)])
    rms = np.sqrt((squares[hi] - squares[lo]) / np.maximum(hi - lo, 1))
    if smooth > 1:
        rms = np.convolve(np.pad(rms, smooth // 2, mode="edge"), np.ones(smooth) / smooth, mode="valid")[:n_frames]
    return rms


def speech_sync(gaps: np.ndarray, wav: np.ndarray, fps: float = FPS, sample_rate: int = SAMPLE_RATE,
                valid: np.ndarray | None = None) -> float:
    """Pearson correlation of the per-frame inner-lip gap [T] with the loudness envelope of ``wav``,
    over the frames where ``valid`` [T] (a face was found) holds; NaN when either is constant or fewer
    than 3 frames count."""
    gaps = np.asarray(gaps, np.float64)
    envelope = loudness_envelope(wav, len(gaps), fps, sample_rate)
    keep = np.ones(len(gaps), bool) if valid is None else np.asarray(valid, bool)
    g, e = gaps[keep], envelope[keep]
    if len(g) < 3 or np.ptp(g) == 0 or np.ptp(e) == 0:
        return float("nan")
    return float(np.corrcoef(g, e)[0, 1])
