"""MFCC features: python_speech_features' ``mfcc`` written out in NumPy, and SAAS's per-frame MFCC windows.

:func:`mfcc` is ``python_speech_features.mfcc(signal, 16000)`` with its defaults (SyncNet's audio
features, and SAAS's pose predictor's): pre-emphasis 0.97, 25 ms frames every 10 ms (zero-padded at the
end, rectangular window), 512-point power spectrum, 26 triangular mel filters from 0 Hz to Nyquist on
the library's floor-rounded FFT bins, natural log, orthonormal DCT-II, 13 cepstra, sinusoidal lifter
L = 22, and c0 replaced by the log of the frame's total power (tested against a loop-by-loop reference
and, where it is installed, the package itself).

:func:`frame_mfcc_windows` / :func:`speech_mfcc_windows` are SAAS's ``generate_mfcc``
(``audio2pose/train_test/test_vq_decoder.py``): one [28, 12] window per 25 fps video frame.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct

from stylization.constants import SAMPLE_RATE

MFCC_STEPS_PER_FRAME = 4  # 100 MFCC steps per second, 25 video frames per second
MFCC_WINDOW = 28  # steps per frame's window: 12 before the frame's 4, the 4, 12 after
MFCC_PAD_SAMPLES = 1920  # 0.12 s of zeros on each side of the speech (= 12 MFCC steps = 3 frames)


def mel_filterbank(n_filters: int = 26, n_fft: int = 512, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[n_filters, n_fft // 2 + 1] triangular filters evenly spaced in mel (2595·log10(1 + f/700)) from
    0 Hz to Nyquist. The band edges are FFT bins ``floor((n_fft + 1)·f / sample_rate)``, as in
    python_speech_features (not librosa's Slaney filters)."""
    high_mel = 2595 * np.log10(1 + (sample_rate / 2) / 700.0)
    hz = 700 * (10 ** (np.linspace(0.0, high_mel, n_filters + 2) / 2595.0) - 1)
    edges = np.floor((n_fft + 1) * hz / sample_rate)
    bins = np.arange(n_fft // 2 + 1)[None, :]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero-width half is never selected below
        rising = np.where((bins >= lo) & (bins < mid), (bins - lo) / (mid - lo), 0.0)
        falling = np.where((bins >= mid) & (bins < hi), (hi - bins) / (hi - mid), 0.0)
    return rising + falling


def mfcc(signal: np.ndarray, sample_rate: int = SAMPLE_RATE, n_ceps: int = 13, n_filters: int = 26,
         n_fft: int = 512, frame_seconds: float = 0.025, hop_seconds: float = 0.01, preemph: float = 0.97,
         lifter: int = 22) -> np.ndarray:
    """Mono samples [S] -> MFCC [M, n_ceps] (one row per 10 ms step), python_speech_features' ``mfcc``
    with ``appendEnergy=True``. M = 1 + ceil((S - 400) / 160) at 16 kHz (1 when S <= 400).

    The scale of ``signal`` matters for c0 only (the log energy): SyncNet was trained on int16 values,
    so pass int16 samples, or floats in [-1, 1] multiplied by 32768 (:func:`int16_scale`)."""
    x = np.asarray(signal, np.float64)
    if x.ndim != 1:
        raise ValueError(f"mfcc takes mono samples [S], got shape {list(x.shape)}")
    x = np.concatenate([x[:1], x[1:] - preemph * x[:-1]])
    frame = int(math.floor(frame_seconds * sample_rate + 0.5))  # the library rounds half up
    hop = int(math.floor(hop_seconds * sample_rate + 0.5))
    n_frames = 1 if len(x) <= frame else 1 + math.ceil((len(x) - frame) / hop)
    x = np.concatenate([x, np.zeros((n_frames - 1) * hop + frame - len(x))])
    frames = x[np.arange(n_frames)[:, None] * hop + np.arange(frame)[None, :]]
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft
    eps = np.finfo(np.float64).eps  # the library replaces exact zeros by eps before the log
    energy = power.sum(1)
    energy = np.where(energy == 0, eps, energy)
    bands = power @ mel_filterbank(n_filters, n_fft, sample_rate).T
    bands = np.where(bands == 0, eps, bands)
    ceps = dct(np.log(bands), type=2, axis=1, norm="ortho")[:, :n_ceps]
    if lifter > 0:
        ceps = ceps * (1 + (lifter / 2) * np.sin(np.pi * np.arange(n_ceps) / lifter))
    ceps[:, 0] = np.log(energy)
    return ceps


def int16_scale(wav: np.ndarray) -> np.ndarray:
    """Samples as the official reads them (ffmpeg's ``pcm_s16le``): int16 input unchanged; float input
    in [-1, 1] scaled by 32768, rounded and clipped to the int16 range. Returned as float64."""
    wav = np.asarray(wav)
    if np.issubdtype(wav.dtype, np.integer):
        return wav.astype(np.float64)
    return np.clip(np.round(wav.astype(np.float64) * 32768.0), -32768, 32767)


def frame_mfcc_windows(mfcc_steps: np.ndarray, frames: int) -> np.ndarray:
    """MFCC [M, 13] (100 steps/s) of the speech *already padded* with :data:`MFCC_PAD_SAMPLES` zeros on
    each side -> windows [frames, 28, 12] float32.

    Window j (video frame j at 25 fps) is steps 4j .. 4j + 27 of the padded MFCC, coefficients 1..12
    (c0, the log energy, is dropped). The padding is 12 steps, so in the unpadded timeline the window
    is the frame's own 4 steps with 12 steps on either side. There are M // 4 - 6 such windows; they are
    cut, or extended by repeating the last one, to ``frames``.
    """
    coeffs = np.asarray(mfcc_steps, np.float32)[:, 1:]
    if len(coeffs) < MFCC_WINDOW:
        raise ValueError(f"{len(coeffs)} MFCC steps: at least {MFCC_WINDOW} are needed for one window")
    n = (len(coeffs) - MFCC_WINDOW) // MFCC_STEPS_PER_FRAME + 1
    index = np.arange(n)[:, None] * MFCC_STEPS_PER_FRAME + np.arange(MFCC_WINDOW)[None, :]
    windows = coeffs[index]  # [n, 28, 12]
    if n < frames:
        windows = np.concatenate([windows, np.repeat(windows[-1:], frames - n, 0)])
    return np.ascontiguousarray(windows[:frames])


def speech_mfcc_windows(wav: np.ndarray, frames: int) -> np.ndarray:
    """Speech float32 [S] at 16 kHz (floats, as ``librosa.load`` gives them; the scale only moves c0,
    which the windows drop) -> [frames, 28, 12]: :data:`MFCC_PAD_SAMPLES` zeros on each side,
    :func:`mfcc`, then :func:`frame_mfcc_windows`."""
    pad = np.zeros(MFCC_PAD_SAMPLES, np.float64)
    speech = np.concatenate([pad, np.asarray(wav, np.float64).reshape(-1), pad])
    return frame_mfcc_windows(mfcc(speech, SAMPLE_RATE), frames)
