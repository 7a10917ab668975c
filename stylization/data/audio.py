"""Audio: decoding to 16 kHz mono, the mel spectrogram, and per-video-frame mel windows.

The mel follows SadTalker / Wav2Lip exactly (see ARCHITECTURE.md): pre-emphasis 0.97,
STFT n_fft 800, hop 200 (80 mel frames per second), Hann window 800, centred with zero
padding (``pad_mode="constant"``, what SadTalker's pinned librosa 0.9.2 does), magnitude,
80 Slaney mel bands over 55-7600 Hz, ``20·log10(max(1e-5, x)) - 20`` dB, then the symmetric
normalisation ``clip(8·(S + 100)/100 - 4, -4, 4)``.

Video frame i (25 fps) reads the 16 mel frames starting at ``int(80·(i - 2)/25)``, clamped
to the spectrogram: a [1, 80, 16] window.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from stylization.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from stylization.errors import DataError

N_FFT, HOP, WIN, N_MELS = 800, 200, 800, 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB, MIN_LEVEL_DB, MAX_ABS_VALUE = 20.0, -100.0, 4.0
MEL_FRAMES_PER_SECOND = SAMPLE_RATE / HOP  # 80
MEL_WINDOW = 16  # mel frames per video frame window (0.2 s)
MEL_OFFSET_FRAMES = 2  # a window starts 2 video frames before its frame


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any audio or video file (wav, flac, mp3, m4a, mp4, ...) to mono float32 [N].

    Other sample rates and channel counts are resampled / mixed down (FFmpeg's resampler
    through PyAV), never rejected. Raises :class:`DataError` naming the file when it is
    missing, undecodable or holds no audio.
    """
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("audio file not found", path)
    chunks: list[np.ndarray] = []
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise DataError("no audio stream", path)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except av.error.FFmpegError as exc:
        raise DataError(f"cannot decode audio ({exc.strerror or exc})", path) from None
    wav = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if wav.size == 0:
        raise DataError("no audio samples (empty audio stream)", path)
    return wav


def check_speech(wav: np.ndarray, source: str, min_seconds: float = 0.2, sample_rate: int = SAMPLE_RATE) -> None:
    """Raise :class:`DataError` when ``wav`` is too short or silent to drive a talking head."""
    if wav.size < min_seconds * sample_rate:
        raise DataError(f"audio is too short ({wav.size / sample_rate:.2f} s; at least {min_seconds} s needed)", source)
    if float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) < 1e-4:
        raise DataError("audio is silent (RMS below -80 dBFS)", source)


def save_wav(path: str | os.PathLike, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float audio as 16-bit PCM wav."""
    import soundfile

    soundfile.write(os.fspath(path), np.asarray(wav, np.float32), sample_rate, subtype="PCM_16")


def n_video_frames(n_samples: int) -> int:
    """Whole 25 fps frames covered by ``n_samples`` at 16 kHz (SadTalker crops the rest)."""
    return n_samples // SAMPLES_PER_FRAME


def fit_to_frames(wav: np.ndarray, n_frames: int) -> np.ndarray:
    """Crop or zero-pad ``wav`` to exactly ``n_frames`` video frames of samples."""
    n = n_frames * SAMPLES_PER_FRAME
    if wav.size >= n:
        return wav[:n]
    return np.pad(wav, (0, n - wav.size))


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """Mono 16 kHz float audio [N] -> normalised mel spectrogram [1 + N // 200, 80] in [-4, 4]."""
    import librosa
    from scipy.signal import lfilter

    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected mono audio [N], got shape {list(wav.shape)}")
    emphasised = lfilter([1.0, -PREEMPHASIS], [1.0], wav).astype(np.float32)
    spec = np.abs(librosa.stft(emphasised, n_fft=N_FFT, hop_length=HOP, win_length=WIN, center=True,
                               pad_mode="constant"))
    mel = _mel_basis() @ spec
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    scaled = 2 * MAX_ABS_VALUE * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE).T.astype(np.float32)


def mel_window_starts(frames: np.ndarray | int, fps: float = FPS) -> np.ndarray:
    """First mel frame of each video frame's window: int(80·(i - 2)/fps), before clamping."""
    i = np.arange(frames) if np.ndim(frames) == 0 else np.asarray(frames)
    return ((MEL_FRAMES_PER_SECOND * (i - MEL_OFFSET_FRAMES)) / fps).astype(np.int64)


def mel_windows(mel: np.ndarray, frames: np.ndarray | int, fps: float = FPS) -> np.ndarray:
    """Mel [T_mel, 80] -> per-video-frame windows [F, 1, 80, 16] (edges clamped).

    ``frames`` is a frame count (windows for 0..frames-1) or an array of frame indices.
    """
    starts = mel_window_starts(frames, fps)
    idx = np.clip(starts[:, None] + np.arange(MEL_WINDOW), 0, mel.shape[0] - 1)
    return np.ascontiguousarray(mel[idx].transpose(0, 2, 1)[:, None])
