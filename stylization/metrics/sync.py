"""Lip-sync scores from SyncNet embeddings: the offset search, LSE-D, LSE-C (Sync_conf), the AV offset,
and the MFCC features SyncNet's audio tower reads. Pure functions; no network here.

Definitions are joonson/syncnet_python's ``SyncNetInstance.evaluate`` (the reference of Wav2Lip's
LSE-D / LSE-C and of the papers' Sync_conf):

* one video embedding and one audio embedding per window start i (window i covers frames i..i+4);
* for each i and each offset o in -vshift..+vshift, the euclidean distance between video window i and
  audio window i + o; audio windows outside the clip are zero vectors (the official zero-pads the
  audio embeddings by vshift rows at both ends), and the distance is ``F.pairwise_distance``'s,
  ``||v - a + 1e-6||``;
* the mean over i of each offset's distances gives a curve over the 2·vshift + 1 offsets;
* **LSE-D** = its minimum; **LSE-C** (confidence, Sync_conf) = its median minus its minimum;
* **AV offset** = vshift - argmin, in frames: video window i matches audio window i - offset best, so
  a positive offset means the video lags the audio (a video delayed by 5 frames scores +5).

``vshift=15`` (31 offsets) is the official demo's default and the issue's definition.

MFCC (:func:`mfcc`): ``python_speech_features.mfcc(signal, 16000)`` with its defaults, as the
official calls it on int16 samples: pre-emphasis 0.97, 25 ms frames every 10 ms (zero-padded at the
end, rectangular window), 512-point power spectrum, 26 triangular mel filters from 0 Hz to Nyquist
on the library's floor-rounded FFT bins, natural log, orthonormal DCT-II, 13 cepstra, sinusoidal
lifter L = 22, and c0 replaced by the log of the frame's total power. Written out here in NumPy
(tested against a loop-by-loop reference and, where it is installed, the package itself).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.fft import dct

from stylization.constants import SAMPLE_RATE

VSHIFT = 15  # frames searched either side of sync (official default)
PAIRWISE_EPS = 1e-6  # F.pairwise_distance's default eps, added to the difference as the official does


# ---- MFCC (python_speech_features' defaults) ----

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


# ---- offset search ----

def offset_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """Video embeddings [N, D] and audio embeddings [N, D] (one per window start) -> distances
    [N, 2·vshift + 1]: column j holds ``||video[i] - audio[i + j - vshift] + 1e-6||``, with zero vectors
    for audio windows outside 0..N-1 (the official ``calc_pdist``)."""
    if video.ndim != 2 or video.shape != audio.shape:
        raise ValueError(f"video and audio embeddings must both be [N, D]; got {list(video.shape)} and "
                         f"{list(audio.shape)}")
    if vshift < 0:
        raise ValueError(f"vshift must be >= 0 frames, got {vshift}")
    n, width = len(video), 2 * vshift + 1
    padded = F.pad(audio, (0, 0, vshift, vshift))  # [N + 2·vshift, D]
    windows = padded.unfold(0, width, 1)[:n]  # [N, D, width]: rows i..i+2·vshift of padded
    diff = video[:, :, None] - windows + PAIRWISE_EPS
    return diff.norm(dim=1)


def sync_scores(distances: torch.Tensor, vshift: int = VSHIFT) -> dict[str, float | int]:
    """Per-window distances [N, 2·vshift + 1] (:func:`offset_distances`) -> ``{"lse_d", "lse_c",
    "offset"}``: the minimum of the mean-distance curve, its median minus that minimum, and
    vshift - argmin (frames; > 0: the video lags the audio). Ties go to the first minimum (the
    largest offset), as ``torch.min`` does in the official."""
    if distances.ndim != 2 or distances.shape[1] != 2 * vshift + 1 or len(distances) == 0:
        raise ValueError(f"distances must be [N >= 1, {2 * vshift + 1}] for vshift {vshift}, "
                         f"got {list(distances.shape)}")
    curve = distances.mean(0)
    lowest, index = torch.min(curve, 0)
    return {"lse_d": float(lowest), "lse_c": float(torch.median(curve) - lowest), "offset": vshift - int(index)}


def sync_from_embeddings(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> dict[str, float | int]:
    """:func:`sync_scores` of :func:`offset_distances`: video and audio embeddings [N, D] -> LSE-D,
    LSE-C and the AV offset."""
    return sync_scores(offset_distances(video, audio, vshift), vshift)
