"""Audio: decoding any format/rate to 16 kHz mono, the mel, and per-frame mel windows."""

import numpy as np
import pytest
import soundfile

from stylization.data.audio import (
    check_speech,
    fit_to_frames,
    load_audio,
    mel_window_starts,
    mel_windows,
    melspectrogram,
    n_video_frames,
)
from stylization.data.video import write_video
from stylization.errors import DataError


def slaney_mel_filters(sr=16000, n_fft=800, n_mels=80, fmin=55.0, fmax=7600.0):
    """Slaney-style mel filterbank (area-normalised triangles), written from the formulas."""

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log_part, lin)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        lin = m * (200.0 / 3)
        log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log_part, lin)

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, bins.size))
    for m in range(n_mels):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (bins - lo) / (centre - lo)
        falling = (hi - bins) / (hi - centre)
        fb[m] = np.maximum(0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    return fb


def reference_mel(wav):
    """SadTalker's mel recomputed with NumPy only: pre-emphasis, zero-padded centred STFT, dB, norm."""
    x = np.append(wav[0], wav[1:] - 0.97 * wav[:-1]).astype(np.float64)
    x = np.pad(x, 400)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 800)  # periodic Hann
    n_frames = 1 + (x.size - 800) // 200
    frames = np.stack([x[i * 200:i * 200 + 800] * window for i in range(n_frames)])
    spec = np.abs(np.fft.rfft(frames, axis=1)).T
    db = 20 * np.log10(np.maximum(1e-5, slaney_mel_filters() @ spec)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4).T


def speech_like(seconds=1.3, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.normal(size=t.size)
    return wav.astype(np.float32)


def test_mel_matches_independent_computation():
    wav = speech_like()
    mel = melspectrogram(wav)
    assert mel.shape == (1 + wav.size // 200, 80) and mel.dtype == np.float32
    np.testing.assert_allclose(mel, reference_mel(wav), atol=2e-3)
    assert mel.min() >= -4 and mel.max() <= 4


def test_mel_windows_follow_the_documented_start_index():
    mel = np.arange(100 * 80, dtype=np.float32).reshape(100, 80)
    starts = mel_window_starts(30)
    assert starts[:4].tolist() == [-6, -3, 0, 3] and starts[10] == int(80 * 8 / 25)
    win = mel_windows(mel, 30)
    assert win.shape == (30, 1, 80, 16)
    np.testing.assert_array_equal(win[10, 0], mel[25:41].T)
    np.testing.assert_array_equal(win[0, 0, :, :7], np.repeat(mel[0:1].T, 7, axis=1))  # clamped at the start
    late = mel_windows(mel, np.array([40]))  # start 121 > 99: every row clamps to the last frame
    np.testing.assert_array_equal(late[0, 0], np.repeat(mel[99:100].T, 16, axis=1))


def test_frame_count_and_fitting():
    assert n_video_frames(16000) == 25 and n_video_frames(639) == 0
    assert fit_to_frames(np.ones(100, np.float32), 1).size == 640
    assert fit_to_frames(np.ones(1000, np.float32), 1).size == 640


@pytest.mark.parametrize("fmt, rate, channels", [("wav", 44100, 2), ("flac", 22050, 1), ("wav", 16000, 1)])
def test_load_audio_resamples_and_mixes_down(tmp_path, fmt, rate, channels):
    seconds = 1.0
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone] * channels, -1) if channels > 1 else tone
    path = tmp_path / f"a.{fmt}"
    soundfile.write(path, data, rate)
    wav = load_audio(path)
    assert wav.dtype == np.float32 and abs(wav.size - 16000) <= 32
    spectrum = np.abs(np.fft.rfft(wav[:16000]))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins: the tone survives resampling


def test_load_audio_from_mp4(tmp_path):
    wav = speech_like(1.0)
    write_video(tmp_path / "v.mp4", np.zeros((25, 16, 16, 3), np.uint8), audio=wav)
    back = load_audio(tmp_path / "v.mp4")
    assert abs(back.size - 16000) < 800  # AAC adds at most one frame of priming/padding
    assert np.sqrt(np.mean(back**2)) > 0.1


def test_bad_audio_is_reported_by_name(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(DataError, match="cannot decode audio") as info:
        load_audio(junk)
    assert str(junk) in str(info.value)
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000), 16000)
    with pytest.raises(DataError, match="silent"):
        check_speech(load_audio(silent), str(silent))
    with pytest.raises(DataError, match="too short"):
        check_speech(np.ones(100, np.float32), "x.wav")
    video_only = tmp_path / "mute.mp4"
    write_video(video_only, np.zeros((5, 16, 16, 3), np.uint8))
    with pytest.raises(DataError, match="no audio stream"):
        load_audio(video_only)


def encode(path, wav, codec, rate):
    """Write mono audio with PyAV in the container named by the path's suffix."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        fmt = stream.codec_context.format.name
        frame = av.AudioFrame.from_ndarray(wav[None].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        size = stream.codec_context.frame_size or 1152
        for chunk in resampler.resample(frame):
            data = chunk.to_ndarray()
            for s in range(0, data.shape[1], size):
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, s:s + size]), format=fmt, layout="mono")
                piece.sample_rate = rate
                container.mux(stream.encode(piece))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("suffix, codec, rate", [("mp3", "libmp3lame", 44100), ("m4a", "aac", 24000)])
def test_load_compressed_audio(tmp_path, suffix, codec, rate):
    t = np.arange(rate) / rate
    path = tmp_path / f"speech.{suffix}"
    encode(path, 0.4 * np.sin(2 * np.pi * 300 * t), codec, rate)
    wav = load_audio(path)
    assert abs(wav.size - 16000) < 1600  # codec delay and padding are a few tens of ms
    spectrum = np.abs(np.fft.rfft(wav[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 300) < 3
