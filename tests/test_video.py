"""Video IO: 25 fps reading (resampling other rates), H.264 writing with muxed audio, batch by batch."""

import os

import numpy as np
import pytest

from stylization.data.video import VideoWriter, probe_video, read_video, resample_indices, write_video
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


def test_streamed_batches_write_the_same_file(tmp_path):
    """VideoWriter fed in uneven batches (an empty one included) writes the very bytes write_video
    writes for the whole array: same frames, same audio, same container."""
    frames = numbered_frames(37, 48)
    audio = 0.2 * np.sin(np.linspace(0, 900, 40000)).astype(np.float32)
    write_video(tmp_path / "whole.mp4", frames, fps=25, audio=audio)
    with VideoWriter(tmp_path / "streamed.mp4", fps=25, audio=audio) as writer:
        for start, stop in ((0, 1), (1, 1), (1, 9), (9, 30), (30, 37)):
            writer.write(frames[start:stop])
        assert writer.n_frames == 37 and not (tmp_path / "streamed.mp4").exists()  # appears on a clean exit
    assert (tmp_path / "streamed.mp4").read_bytes() == (tmp_path / "whole.mp4").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["streamed.mp4", "whole.mp4"]  # no temporary file left


def test_streamed_audio_follows_the_frames_written(tmp_path):
    """The sound is cropped to the frames actually written (T / fps), however long the track given."""
    path = tmp_path / "short.mp4"
    with VideoWriter(path, fps=25, audio=0.1 * np.ones(16000 * 4, np.float32), sample_rate=16000) as writer:
        writer.write(numbered_frames(20))
        writer.write(numbered_frames(5))
    info = probe_video(path)
    assert info.n_frames == 25 and abs(info.audio_duration - 1.0) < 0.005


def test_a_failing_stream_leaves_nothing(tmp_path):
    """An exception between batches, a bad batch, a changed frame size or no frame at all: neither
    the file nor its temporary file remains, and an existing file of that name is untouched."""
    existing = tmp_path / "kept.mp4"
    existing.write_bytes(b"an older video")

    def frames_then_fail():
        yield numbered_frames(4)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        with VideoWriter(existing, audio=np.zeros(8000, np.float32)) as writer:
            for batch in frames_then_fail():
                writer.write(batch)
    with pytest.raises(ValueError, match="frame size changed"):
        with VideoWriter(tmp_path / "resized.mp4") as writer:
            writer.write(numbered_frames(2, 32))
            writer.write(numbered_frames(2, 64))
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(tmp_path / "float.mp4") as writer:
            writer.write(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4") as writer:
            writer.write(np.zeros((0, 32, 32, 3), np.uint8))
    assert os.listdir(tmp_path) == ["kept.mp4"] and existing.read_bytes() == b"an older video"
