"""Raw-dataset discovery (MEAD, HDTF, folder), sharding, and streamed decoding of one raw clip."""

from __future__ import annotations

import logging
import os
from fractions import Fraction

import numpy as np
import pytest

from stylization.data.audio import load_audio
from stylization.data.video import probe_video, read_video, resample_indices, write_video
from stylization.errors import ConfigError, DataError
from stylization.preprocess.decode import decode_audio, iter_frames
from stylization.preprocess.sources import (RawClip, discover, folder_clips, hdtf_clips, mead_clips, parse_hdtf_times,
                                            parse_shard, shard)

WIDTH, HEIGHT = 64, 48
BAND = 16  # rows per base-8 digit of the frame number


# ---------------------------------------------------------------------------------------------- helpers


def coded_frames(n: int) -> np.ndarray:
    """[n, 48, 64, 3] frames on a grey gradient; frame i shows its three base-8 digits as bright
    8-px blocks, one per 16-row band (digit d at columns 8d..8d+7), which survive H.264."""
    frames = np.empty((n, HEIGHT, WIDTH, 3), np.uint8)
    frames[:] = np.linspace(20, 70, WIDTH).astype(np.uint8)[None, None, :, None]
    for i in range(n):
        for band in range(3):
            digit = (i >> (3 * band)) & 7
            frames[i, BAND * band:BAND * (band + 1), 8 * digit:8 * digit + 8] = 230
    return frames


def frame_numbers(frames) -> np.ndarray:
    """The frame numbers drawn by :func:`coded_frames`, read back from decoded frames [T, 48, 64, 3]."""
    frames = np.asarray(frames, np.float32)
    numbers = np.zeros(len(frames), np.int64)
    for band in range(3):
        cells = frames[:, BAND * band:BAND * (band + 1)].mean(axis=(1, 3)).reshape(len(frames), 8, 8).mean(2)
        numbers += cells.argmax(1) << (3 * band)
    return numbers


def write_timed(path, frames: np.ndarray, pts, time_base: Fraction, gop: int = 250) -> None:
    """H.264 mp4 whose frame i is presented at pts[i] * time_base s (irregular pts: a VFR video)."""
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        stream.options = {"crf": "18", "preset": "veryfast", "g": str(gop)}  # veryfast: with B-frames
        for image, t in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(t), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def touch(path) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()
    return str(path)


@pytest.fixture(scope="module")
def thirty_fps(tmp_path_factory):
    """3 s of numbered frames at 30 fps, a keyframe every 10 frames."""
    path = tmp_path_factory.mktemp("video") / "thirty.mp4"
    write_timed(path, coded_frames(90), np.arange(90), Fraction(1, 30), gop=10)
    return path


# ---------------------------------------------------------------------------------------------- MEAD


def test_mead_discovery_layout_quirk_and_unknown_emotions(tmp_path, caplog):
    raw = tmp_path / "mead"
    front = raw / "M003" / "video" / "front"
    for rel in ("angry/level_1/001.mp4", "angry/level_1/002.mp4", "neutral/level_1/001.mp4",
                "excited/level_1/001.mp4", "angry/extra/001.mp4"):
        touch(front / rel)
    touch(raw / "M003" / "video" / "left_30" / "angry" / "level_1" / "001.mp4")
    touch(raw / "M003" / "audio" / "angry" / "level_1" / "001.m4a")  # 002's audio is missing
    touch(raw / "W021" / "video" / "1" / "front" / "happy" / "level_3" / "005.mp4")  # the extra-level quirk
    with caplog.at_level(logging.WARNING, "stylization.preprocess.sources"):
        clips = mead_clips(str(raw))
    assert [c.id for c in clips] == ["M003#angry#level_1#001", "M003#angry#level_1#002", "M003#neutral#level_1#001",
                                     "W021#happy#level_3#005"]
    assert "excited" in caplog.text and "extra" in caplog.text
    first, missing_audio, _, quirk = clips
    assert first == RawClip("M003#angry#level_1#001", "mead", "M003", "angry", 1, str(front / "angry/level_1/001.mp4"),
                            str(raw / "M003/audio/angry/level_1/001.m4a"), None, None)
    assert missing_audio.audio == str(raw / "M003/audio/angry/level_1/002.m4a")  # set; processing reports it
    assert (quirk.speaker, quirk.emotion, quirk.level) == ("W021", "happy", 3)
    assert quirk.video == str(raw / "W021/video/1/front/happy/level_3/005.mp4")
    assert quirk.audio == str(raw / "W021/audio/happy/level_3/005.m4a")
    assert first.to_json()["video"] == first.video and first.to_json()["start"] is None
    assert [c.id for c in mead_clips(str(raw), view="left_30")] == ["M003#angry#level_1#001"]
    assert discover("mead", str(raw)) == (clips, [])


def test_mead_without_clips_names_the_folder_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"level_<n>/<nnn>\.mp4") as err:
        mead_clips(str(tmp_path))
    assert str(tmp_path) in str(err.value)
    with pytest.raises(DataError, match="not found"):
        mead_clips(str(tmp_path / "absent"))


# ---------------------------------------------------------------------------------------------- HDTF


def test_parse_hdtf_times_tolerates_bom_spaces_and_overlaps():
    text = ("\ufeffRadio11.mp4 00:30-01:00 01:30-02:30  \n\n"
            "MittRomney.mp4 08:10-08:30 00:33-08:53\r\n"
            "   \n"
            "Long.mp4 1:02:03-1:02:10.5 10:35-10:45\n")
    times = parse_hdtf_times(text, "RD_annotion_time.txt")
    assert times == {"Radio11": [(30.0, 60.0), (90.0, 150.0)],
                     "MittRomney": [(490.0, 510.0), (33.0, 533.0)],  # overlapping, unordered: kept in line order
                     "Long": [(3723.0, 3730.5), (635.0, 645.0)]}


@pytest.mark.parametrize("bad", ["Radio2.mp4", "Radio2.mp4 00:30-", "Radio2.mp4 01:00-00:30", "Radio2.mp4 00:75-01:00",
                                 "Radio2.mp4 00:30-01:00 oops"])
def test_parse_hdtf_times_names_the_malformed_line(bad):
    with pytest.raises(DataError, match=r"WRA_annotion_time\.txt: line 3: "):
        parse_hdtf_times(f"Radio1.mp4 00:30-01:00\n\n{bad}\n", "WRA_annotion_time.txt")


def test_hdtf_clips_finds_videos_and_reports_missing_ones(tmp_path, caplog):
    raw = tmp_path / "hdtf"
    (raw / "HDTF_dataset").mkdir(parents=True)
    (raw / "HDTF_dataset" / "RD_annotion_time.txt").write_text(
        "Radio11.mp4 00:30-01:00 01:30-02:30 \nRadio2.mp4 00:00-00:10\n", encoding="utf-8")
    (raw / "HDTF_dataset" / "WDA_annotion_time.txt").write_text("\ufeffBarackObama.mp4 01:00-01:20\n", encoding="utf-8")
    radio = touch(raw / "_videos_raw" / "RD_Radio11.mp4")
    obama = touch(raw / "more" / "deep" / "BarackObama.webm")
    with caplog.at_level(logging.WARNING, "stylization.preprocess.sources"):
        clips, missing = hdtf_clips(str(raw))
    assert [(c.id, c.speaker, c.video, c.start, c.end) for c in clips] == [
        ("RD_Radio11_000", "RD_Radio11", radio, 30.0, 60.0),
        ("RD_Radio11_001", "RD_Radio11", radio, 90.0, 150.0),
        ("WDA_BarackObama_000", "WDA_BarackObama", obama, 60.0, 80.0)]
    assert all(c.dataset == "hdtf" and c.emotion == "unlabelled" and c.level == 0 and c.audio is None for c in clips)
    assert [m[0] for m in missing] == ["RD_Radio2_000"] and "RD_Radio2.mp4" in missing[0][1]
    assert "RD_Radio2" in caplog.text
    assert discover("hdtf", str(raw)) == (clips, missing)


def test_hdtf_without_annotations_or_videos_raises(tmp_path):
    touch(tmp_path / "RD_Radio1.mp4")
    with pytest.raises(DataError, match="annotion_time"):
        hdtf_clips(str(tmp_path))
    os.remove(tmp_path / "RD_Radio1.mp4")
    (tmp_path / "RD_annotion_time.txt").write_text("Radio1.mp4 00:00-00:10\n")
    with pytest.raises(DataError, match="none of the 1 annotated"):
        hdtf_clips(str(tmp_path))


# ---------------------------------------------------------------------------------------------- folder


def test_folder_clips_speakers_ids_and_side_audio(tmp_path):
    a = touch(tmp_path / "alice" / "a.mp4")
    wav = touch(tmp_path / "alice" / "a.wav")
    b = touch(tmp_path / "alice" / "sub" / "b.MOV")
    solo = touch(tmp_path / "solo.mkv")
    for ignored in ("notes.txt", ".hidden.mp4", ".cache/c.mp4"):
        touch(tmp_path / ignored)
    clips = folder_clips(str(tmp_path))
    assert [(c.id, c.speaker, c.video, c.audio) for c in clips] == [
        ("alice#a", "alice", a, wav), ("alice#sub#b", "alice", b, None), ("solo", "solo", solo, None)]
    assert all(c.emotion == "unlabelled" and c.level == 0 and c.start is None for c in clips)
    assert discover("folder", str(tmp_path)) == (clips, [])
    touch(tmp_path / "alice" / "a.webm")
    with pytest.raises(DataError, match="alice#a"):
        folder_clips(str(tmp_path))


def test_folder_without_videos_and_unknown_dataset_raise(tmp_path):
    touch(tmp_path / "readme.txt")
    with pytest.raises(DataError, match="no videos"):
        folder_clips(str(tmp_path))
    with pytest.raises(ConfigError, match="mead, hdtf, folder"):
        discover("voxceleb", str(tmp_path))


# ---------------------------------------------------------------------------------------------- shards


def test_shards_are_disjoint_complete_and_stable():
    clips = [RawClip(f"S{i // 10:02d}#clip{i:03d}", "folder", f"S{i // 10:02d}", "unlabelled", 0, f"/v/{i}.mp4",
                     None, None, None) for i in range(200)]
    parts = [shard(clips, i, 3) for i in range(3)]
    ids = [c.id for part in parts for c in part]
    assert sorted(ids) == sorted(c.id for c in clips) and len(set(ids)) == len(clips)
    assert all(len(part) > 40 for part in parts)
    assert [c.id for c in shard(clips, 1, 3)] == [c.id for c in parts[1]]
    assert [c.id for c in shard(list(reversed(clips)), 1, 3)] == [c.id for c in reversed(parts[1])]
    assert shard(clips, 0, 1) == clips
    # Pinned: a changed hash would silently re-split a half-processed dataset.
    assert [c.id for c in shard(clips[:10], 0, 3)] == PINNED_SHARD_0_OF_3


PINNED_SHARD_0_OF_3 = ["S00#clip001", "S00#clip005", "S00#clip007", "S00#clip009"]


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4) and parse_shard(" 3 / 4 ") == (3, 4)
    for bad in ("4/4", "1/0", "-1/3", "a/b", "2"):
        with pytest.raises(ConfigError, match="0 <= I < N"):
            parse_shard(bad)
    with pytest.raises(ConfigError):
        shard([], 3, 3)


# ---------------------------------------------------------------------------------------------- decode


def test_whole_file_resamples_30_to_25_like_read_video(tmp_path):
    path = tmp_path / "two_seconds.mp4"
    write_video(path, coded_frames(60), fps=30)
    frames = np.stack(list(iter_frames(path)))
    assert frames.shape == (50, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(frame_numbers(frames), resample_indices(np.arange(60) / 30, 30, 25))
    np.testing.assert_array_equal(frames, read_video(path))
    native = np.stack(list(iter_frames(path, fps=30)))
    np.testing.assert_array_equal(frame_numbers(native), np.arange(60))


@pytest.mark.parametrize("start,end", [(1.3, 2.5), (2.5, 2.9), (1.2, None), (2.0, 10.0), (0.0, 0.4)])
def test_segment_picks_the_frames_on_screen(thirty_fps, start, end):
    frames = list(iter_frames(thirty_fps, start=start, end=end))
    video_end = 3.0  # 90 frames at 30 fps
    assert len(frames) == int(round((min(end or video_end, video_end) - start) * 25))
    shown_at = start + np.arange(len(frames)) / 25 + 0.5 / 30  # output time plus the half-frame tolerance
    expected = np.searchsorted(np.arange(90) / 30, shown_at, side="right") - 1
    np.testing.assert_array_equal(frame_numbers(frames), expected)


def test_segment_after_the_end_and_bad_arguments(thirty_fps):
    with pytest.raises(DataError, match="shorter"):
        list(iter_frames(thirty_fps, start=3.5, end=4.0))
    with pytest.raises(ValueError):
        iter_frames(thirty_fps, start=2.0, end=1.0)
    with pytest.raises(ValueError):
        iter_frames(thirty_fps, max_side=0)


def test_max_side_downscales_the_longer_side(thirty_fps):
    small = next(iter_frames(thirty_fps, max_side=32))
    assert small.shape == (24, 32, 3) and small.dtype == np.uint8
    assert next(iter_frames(thirty_fps, max_side=100)).shape == (HEIGHT, WIDTH, 3)


def test_variable_frame_rate_is_resampled_by_timestamps(tmp_path):
    steps_ms = np.tile([20, 33, 50, 15, 200, 33, 40], 7)  # irregular, with a 200 ms hold
    pts = np.concatenate([[0], np.cumsum(steps_ms)])
    path = tmp_path / "phone.mp4"
    write_timed(path, coded_frames(len(pts)), pts, Fraction(1, 1000))
    frames = np.stack(list(iter_frames(path)))
    src_fps = probe_video(path).fps
    expected = resample_indices(pts / 1000.0, src_fps, 25)
    np.testing.assert_array_equal(frame_numbers(frames), expected)
    np.testing.assert_array_equal(frames, read_video(path))
    held = frame_numbers(frames[4:8])  # 160-280 ms: inside the 200 ms hold of frame 4 (shown at 118 ms)
    assert set(held.tolist()) == {4}


def test_unreadable_videos_raise_data_error(tmp_path, thirty_fps):
    data = thirty_fps.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    for path in (truncated, garbage, tmp_path / "absent.mp4"):
        with pytest.raises(DataError, match=path.name):
            list(iter_frames(path))


def test_corrupt_stream_reports_frames_read(tmp_path):
    path = tmp_path / "damaged.mp4"
    write_video(path, coded_frames(60), fps=30)
    data = bytearray(path.read_bytes())
    mdat = data.find(b"mdat")  # the coded frames: a 4-byte size, then "mdat", then the payload
    middle = mdat + 4 + int.from_bytes(data[mdat - 4:mdat], "big") // 2
    data[middle:middle + 300] = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"damaged\.mp4: corrupt video .* after \d+ frames"):
        list(iter_frames(path))


def test_decode_audio_cuts_the_segment(tmp_path):
    t = np.arange(32000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    video = tmp_path / "talk.mp4"
    write_video(video, coded_frames(50), fps=25, audio=tone)
    whole = load_audio(video)
    segment = decode_audio(video, start=0.5, end=1.25)
    assert segment.dtype == np.float32 and segment.shape == (12000,)
    np.testing.assert_array_equal(segment, whole[8000:20000])
    assert decode_audio(video, start=1.5).size == whole.size - 24000
    m4a = tmp_path / "talk.m4a"
    remux_audio(video, m4a)
    np.testing.assert_allclose(decode_audio(m4a, 0.5, 1.25), segment, atol=1e-4)
    with pytest.raises(DataError, match="no audio between"):
        decode_audio(video, start=5.0, end=6.0)
    silent = tmp_path / "silent.mp4"
    write_video(silent, coded_frames(5), fps=25)
    for path in (silent, tmp_path / "absent.m4a"):
        with pytest.raises(DataError, match=path.name):
            decode_audio(path)


def remux_audio(src, dst) -> None:
    """Copy the AAC track of ``src`` into an ``.m4a`` (MEAD's audio container) without re-encoding."""
    import av

    with av.open(str(src)) as source, av.open(str(dst), mode="w", format="ipod") as target:
        audio = source.streams.audio[0]
        out = target.add_stream_from_template(audio)
        for packet in source.demux(audio):
            if packet.dts is None:
                continue
            packet.stream = out
            target.mux(packet)

