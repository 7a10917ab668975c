"""Video IO: 25 fps reading (resampling other rates), H.264 writing with muxed audio."""

import os

import numpy as np
import pytest

from stylization.data.video import probe_video, read_video, resample_indices, write_video
from stylization.errors import DataError


def numbered_frames(n, size=32):
    """Frames whose brightness encodes their index (steps of 8 survive compression)."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    frames[...] = (np.arange(n) * 8 % 256)[:, None, None, None]
    return frames


def test_roundtrip_keeps_frames_and_audio_duration(tmp_path):
    path = tmp_path / "out.mp4"
    audio = 0.2 * np.sin(np.linspace(0, 600, 30000)).astype(np.float32)  # 1.875 s for 2.0 s of video
    write_video(path, numbered_frames(30), fps=25, audio=audio)
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.n_frames) == (32, 32, 25.0, 30)
    assert abs(info.duration - 1.2) < 1e-6
    assert abs(info.audio_duration - info.duration) < 1 / 25  # within one frame
    frames = read_video(path)
    assert frames.shape == (30, 32, 32, 3)
    assert np.abs(frames[:, 16, 16, 0].astype(int) - np.arange(30) * 8).max() <= 3


def test_muxed_sound_is_not_delayed(tmp_path):
    """AAC's 1024 priming samples are marked and skipped (the mp4 edit list): a click written at
    0.5 s decodes at 0.5 s, and the sound lasts as long as the video (before: 21.3 ms late and long)."""
    from stylization.preprocess.decode import decode_audio

    wav = np.zeros(32000, np.float32)  # 2 s at 16 kHz
    wav[8000:8040] = 0.9
    path = tmp_path / "click.mp4"
    write_video(path, numbered_frames(50), fps=25, audio=wav, sample_rate=16000)
    decoded = np.asarray(decode_audio(str(path))).reshape(-1)
    assert abs(int(np.argmax(np.abs(decoded))) - 8000) <= 16  # within 1 ms (the resampler's filter)
    assert abs(probe_video(path).audio_duration - 2.0) < 0.005


def test_other_frame_rates_are_resampled_to_25(tmp_path):
    path = tmp_path / "thirty.mp4"
    write_video(path, numbered_frames(30), fps=30)  # 1 s at 30 fps
    frames = read_video(path, fps=25)
    assert len(frames) == 25
    shown = np.round(frames[:, 16, 16, 0] / 8).astype(int)
    np.testing.assert_array_equal(shown, resample_indices(np.arange(30) / 30, 30, 25))
    assert len(read_video(path, fps=None)) == 30


def test_resample_indices_pick_the_nearest_earlier_frame():
    assert resample_indices(np.arange(6) / 30, 30, 25).tolist() == [0, 1, 2, 4, 5]
    assert resample_indices(np.arange(4) / 10, 10, 25).tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3, 3]


def test_corrupt_and_missing_videos_are_reported(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(DataError) as info:
        read_video(junk)
    assert str(junk) in str(info.value)
    good = tmp_path / "good.mp4"
    write_video(good, numbered_frames(50, 64), fps=25)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError):
        read_video(truncated)


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((3, 31, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", np.zeros((3, 32, 32, 3), np.float32))
    assert os.listdir(tmp_path) == []
