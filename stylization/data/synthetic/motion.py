"""Coefficients of a synthetic clip: mouth driven by the sound, emotion, blinks, head pose.

The mouth is a documented, deterministic function of the audio, per 25 fps frame t
(640 samples):

* loudness L[t] = clip((dBFS(rms) + 45) / 33, 0, 1), and 0 below -45 dBFS (silence);
* brightness B[t] = clip((spectral centroid - 400 Hz) / 2600 Hz, 0, 1);
* the mouth leads the sound by :data:`MOUTH_LEAD_FRAMES` (80 ms): the drive at frame t is
  L[t + 2] (clamped), smoothed with [0.25, 0.5, 0.25];
* jaw_open = gain · drive; lip_stretch += 0.5 · drive · B (bright sounds: "ee", "s");
  pucker += 0.5 · drive · (1 - B) (dark sounds: "oo", "oh").

Silence therefore closes the mouth (no emotion offset opens the jaw). The emotion adds
its static offset, scales the speaking amplitude and brow emphasis, and sets the blink
rate (:mod:`~stylization.data.synthetic.profiles`).

Each speaker's motion habits (:func:`~stylization.data.synthetic.profiles.motion_habits`) then
make their talking style: ``jaw_gain`` multiplies the jaw opening, ``blink_factor`` the blink
rate, ``sway_tempo`` the frequencies of the head sway, and the head pitches by
``nod_gain · (E[t] - mean E)`` with E the loudness smoothed over 9 frames (a nod on stressed
syllables, so part of the head motion follows the speech).
"""

from __future__ import annotations

import numpy as np

from stylization.constants import COEFF_DIM, COEFF_SLICES, EXP_DIM, FPS, RECON_CROP_SIZE, SAMPLE_RATE, SAMPLES_PER_FRAME
from stylization.data.face_model import EXPRESSION_COMPONENTS
from stylization.data.synthetic.profiles import EMOTIONS, LEVEL_SCALE, Speaker, expression_offset

MOUTH_LEAD_FRAMES = 2
SILENCE_DBFS, LOUD_DBFS = -45.0, -12.0
# The face sits 3 units further from the camera and a little low, so hair and chin fit the frame.
FRAMING = np.array([0.0, -0.12, -3.0], np.float32)
BLINK_PROFILE = np.array([0.5, 0.9, 1.0, 0.9, 0.5], np.float32)
C = {name: i for i, name in enumerate(EXPRESSION_COMPONENTS)}


def frame_features(wav: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(loudness [T] in [0, 1], brightness [T] in [0, 1]) per 25 fps frame of 16 kHz audio."""
    x = np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32)
    x[: min(wav.size, x.size)] = wav[: x.size]
    frames = x.reshape(n_frames, SAMPLES_PER_FRAME).astype(np.float64)
    db = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-9)
    loud = np.clip((db - SILENCE_DBFS) / (LOUD_DBFS - SILENCE_DBFS), 0.0, 1.0)
    loud[db < SILENCE_DBFS] = 0.0
    spec = np.abs(np.fft.rfft(frames * np.hanning(SAMPLES_PER_FRAME), axis=1))
    freqs = np.fft.rfftfreq(SAMPLES_PER_FRAME, 1.0 / SAMPLE_RATE)
    centroid = (spec * freqs).sum(1) / (spec.sum(1) + 1e-9)
    bright = np.clip((centroid - 400.0) / 2600.0, 0.0, 1.0)
    return loud.astype(np.float32), bright.astype(np.float32)


def _smooth(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    pad = len(kernel) // 2
    return np.convolve(np.pad(x, pad, mode="edge"), kernel, mode="valid").astype(np.float32)


def mouth_drive(loud: np.ndarray, lead: int = MOUTH_LEAD_FRAMES) -> np.ndarray:
    """Loudness [T] -> jaw drive [T]: shifted ``lead`` frames earlier, lightly smoothed."""
    idx = np.minimum(np.arange(loud.size) + lead, loud.size - 1)
    return _smooth(loud[idx], np.array([0.25, 0.5, 0.25]))


def _smooth_noise(rng: np.random.Generator, n_frames: int, dims: int, period_frames: float) -> np.ndarray:
    """Unit-variance noise [T, dims] varying on a scale of ``period_frames``."""
    kernel = np.hanning(max(3, int(period_frames)) | 1)
    kernel /= np.sqrt((kernel**2).sum())
    raw = rng.normal(size=(n_frames + len(kernel), dims))
    out = np.stack([np.convolve(raw[:, d], kernel, mode="valid")[:n_frames] for d in range(dims)], 1)
    return out.astype(np.float32)


def head_pose(speaker: Speaker, n_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Smooth speaker-specific motion: (angles [T, 3] radians, translation [T, 3])."""
    habit = np.random.default_rng(speaker.pose_seed)
    freqs = speaker.sway_tempo * habit.uniform(0.1, 0.5, size=(3, 3))  # Hz, three sinusoids per axis
    weights = habit.dirichlet(np.ones(3), size=3)
    axis_scale = np.array([0.6, 1.0, 0.4])  # pitch, yaw, roll
    t = np.arange(n_frames)[:, None] / float(FPS)
    angles = np.zeros((n_frames, 3), np.float32)
    for axis in range(3):
        phases = rng.uniform(0, 2 * np.pi, 3)
        wave = (weights[axis] * np.sin(2 * np.pi * freqs[axis] * t + phases)).sum(1)
        angles[:, axis] = speaker.pose_amplitude * axis_scale[axis] * wave
    trans = FRAMING + 0.03 * _smooth_noise(rng, n_frames, 3, 40) * np.array([1.0, 1.0, 1.5], np.float32)
    return angles, trans


def blink_track(rate_per_second: float, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """[T] eye closure from Poisson-timed blinks (5-frame profile, peak 1.0)."""
    track = np.zeros(n_frames, np.float32)
    t = rng.exponential(1.0 / rate_per_second) * FPS
    while t < n_frames:
        start = int(t)
        end = min(n_frames, start + len(BLINK_PROFILE))
        track[start:end] = np.maximum(track[start:end], BLINK_PROFILE[: end - start])
        t += len(BLINK_PROFILE) + rng.exponential(1.0 / rate_per_second) * FPS
    return track


def clip_coefficients(speaker: Speaker, emotion: str, level: int, wav: np.ndarray, n_frames: int,
                      resolution: int, rng: np.random.Generator) -> np.ndarray:
    """Ground-truth coefficients [T, 260] of one clip (see the module docstring)."""
    profile, neutral = EMOTIONS[emotion], EMOTIONS["neutral"]
    s = LEVEL_SCALE[level] if emotion != "neutral" else 0.0
    mix = lambda a, b: a + (b - a) * s  # noqa: E731  (neutral value -> this emotion's, by level)
    loud, bright = frame_features(wav, n_frames)
    drive = mouth_drive(loud)
    exp = np.tile(expression_offset(emotion, level), (n_frames, 1)) if emotion != "neutral" else np.zeros(
        (n_frames, EXP_DIM), np.float32)
    exp[:, C["jaw_open"]] += speaker.jaw_gain * mix(neutral.mouth_gain, profile.mouth_gain) * drive
    exp[:, C["lip_stretch"]] += 0.5 * drive * bright
    exp[:, C["pucker"]] += 0.5 * drive * (1.0 - bright)
    emphasis = _smooth(loud, np.hanning(9) / np.hanning(9).sum())
    exp[:, C["brow_raise"]] += mix(neutral.brow_emphasis, profile.brow_emphasis) * emphasis
    blinks = blink_track(speaker.blink_factor * mix(neutral.blink_per_second, profile.blink_per_second), n_frames, rng)
    exp[:, C["eye_close"]] = np.minimum(1.0, exp[:, C["eye_close"]] + blinks)
    exp[:, len(EXPRESSION_COMPONENTS):] += 0.08 * _smooth_noise(rng, n_frames, EXP_DIM - len(EXPRESSION_COMPONENTS), 12)
    angles, trans = head_pose(speaker, n_frames, rng)
    angles[:, 0] += speaker.nod_gain * (emphasis - emphasis.mean())  # the speaker's nod on stressed syllables
    coeffs = np.zeros((n_frames, COEFF_DIM), np.float32)
    coeffs[:, COEFF_SLICES["id"]] = speaker.identity
    coeffs[:, COEFF_SLICES["exp"]] = exp
    coeffs[:, COEFF_SLICES["angle"]] = angles
    coeffs[:, COEFF_SLICES["trans"]] = trans
    # Frames are rendered straight from the 224 camera, scaled to the resolution: no offset.
    coeffs[:, COEFF_SLICES["crop"]] = (resolution / RECON_CROP_SIZE, 0.0, 0.0)
    return coeffs
