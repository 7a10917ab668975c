"""Head-pose metrics for generated poses: diversity across samples, amount of motion, and rhythm
(how head speed follows the loudness of the speech). Pure NumPy functions.

Poses are [T, 6] rows at 25 fps: Euler angles (radians) then translation; the metrics read the angles
and report degrees.

* :func:`diversity_deg`: the standard deviation across samples of the same input, per frame and
  angle, averaged (0 for a deterministic model or a held pose);
* :func:`motion_deg`: the standard deviation over time of each angle, averaged (how much the head moves);
* :func:`speed_energy_correlation`: Pearson's r between the head's angular speed |Δangle| per frame and
  the speech's RMS energy in that frame (the audio-pose rhythm measure of audio-driven head motion work;
  ``scipy.stats.pearsonr``). NaN when either is constant.
"""

from __future__ import annotations

import numpy as np

from stylization.constants import FPS, SAMPLE_RATE


def _angles_deg(poses: np.ndarray) -> np.ndarray:
    return np.degrees(np.asarray(poses, np.float64)[..., :3])


def diversity_deg(samples: np.ndarray) -> float:
    """Samples [S, T, 6] (S >= 2) of one input -> mean std across samples of the angles (degrees)."""
    samples = np.asarray(samples)
    if samples.ndim != 3 or len(samples) < 2:
        raise ValueError(f"diversity needs samples [S >= 2, T, 6], got shape {list(samples.shape)}")
    return float(_angles_deg(samples).std(0).mean())


def motion_deg(poses: np.ndarray) -> float:
    """Poses [T, 6] -> mean over the three angles of their std over time (degrees)."""
    return float(_angles_deg(poses).std(0).mean())


def frame_energy(wav: np.ndarray, n_frames: int, fps: float = FPS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech [S] -> RMS energy per video frame [n_frames] (frames past the end of the speech are 0)."""
    hop = sample_rate / fps
    wav = np.asarray(wav, np.float64).reshape(-1)
    out = np.zeros(n_frames)
    for i in range(n_frames):
        chunk = wav[int(round(i * hop)): int(round((i + 1) * hop))]
        out[i] = np.sqrt(np.mean(chunk ** 2)) if chunk.size else 0.0
    return out


def speed_energy_correlation(poses: np.ndarray, wav: np.ndarray, fps: float = FPS,
                             sample_rate: int = SAMPLE_RATE) -> float:
    """Poses [T, 6] and the speech [S] -> Pearson's r between the angular speed (degrees per frame,
    frames 1..T-1) and the RMS energy of those frames."""
    from scipy.stats import pearsonr

    angles = _angles_deg(poses)
    speed = np.linalg.norm(np.diff(angles, axis=0), axis=1)
    energy = frame_energy(wav, len(angles), fps, sample_rate)[1:]
    if len(speed) < 2 or np.ptp(speed) == 0 or np.ptp(energy) == 0:
        return float("nan")
    return float(pearsonr(speed, energy).statistic)
