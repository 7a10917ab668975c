"""Video: read any video as RGB frames at 25 fps, write H.264 mp4 with the audio muxed.

Both go through PyAV (FFmpeg's libraries with libx264 and AAC), so no ffmpeg binary or
compiled extension of ours is needed.

Reading resamples to the target rate the way FFmpeg's ``fps`` filter does: output frame k
shows the source frame on screen at time k / fps (MEAD is recorded at 30 fps; the
official Style²Talker code forgot to resample it). Writing encodes yuv420p H.264 and, when
audio is given, crops or pads it to exactly the video's duration before muxing, so the
container's two streams agree within one frame.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from fractions import Fraction

import numpy as np

from stylization.constants import FPS, SAMPLE_RATE
from stylization.errors import DataError

AAC_SAMPLE_RATE = 48000  # AAC frames are 1024 samples: 21 ms at 48 kHz, under one video frame


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a container says about its first video stream (and whether it has audio)."""

    width: int
    height: int
    fps: float  # average frame rate
    n_frames: int  # from the header; 0 when the container does not say
    duration: float  # seconds of the video stream
    audio_duration: float | None  # seconds of the first audio stream, None without audio


def _open(path: str):
    import av

    if not os.path.isfile(path):
        raise DataError("video file not found", path)
    try:
        return av.open(path)
    except av.error.FFmpegError as exc:
        raise DataError(f"not a readable video ({exc.strerror or exc})", path) from None


def _stream_seconds(stream, container) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return float(container.duration or 0) / 1e6


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Header facts of a video file; raises :class:`DataError` for missing or unreadable files."""
    path = os.fspath(path)
    with _open(path) as container:
        if not container.streams.video:
            raise DataError("no video stream", path)
        v = container.streams.video[0]
        rate = v.average_rate or v.guessed_rate or FPS
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            width=v.codec_context.width,
            height=v.codec_context.height,
            fps=float(rate),
            n_frames=int(v.frames or 0),
            duration=_stream_seconds(v, container),
            audio_duration=None if audio is None else _stream_seconds(audio, container),
        )


def read_video(path: str | os.PathLike, fps: float | None = FPS, max_frames: int | None = None) -> np.ndarray:
    """Decode a video to RGB uint8 frames [T, H, W, 3], resampled to ``fps`` (None keeps every frame).

    Raises :class:`DataError` naming the file when it is missing, corrupt or has no frames.
    """
    import av

    path = os.fspath(path)
    frames: list[np.ndarray] = []
    times: list[float] = []
    with _open(path) as container:
        if not container.streams.video:
            raise DataError("no video stream", path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else len(times) / float(stream.average_rate or FPS)
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(t)
                if fps is None and max_frames is not None and len(frames) >= max_frames:
                    break
        except av.error.FFmpegError as exc:
            raise DataError(f"corrupt video ({exc.strerror or exc}) after {len(frames)} frames", path) from None
    if not frames:
        raise DataError("video has no decodable frames", path)
    if fps is None:
        return np.stack(frames)
    src_fps = float(stream.average_rate or fps)
    idx = resample_indices(np.asarray(times), src_fps, fps)
    if max_frames is not None:
        idx = idx[:max_frames]
    return np.stack([frames[i] for i in idx])


def resample_indices(times: np.ndarray, src_fps: float, fps: float) -> np.ndarray:
    """Source frame shown at each output time k / fps, for source frames at ``times`` (s).

    The output spans the source's duration (last frame time + one source frame), so 30 fps
    for 2 s gives exactly 50 frames at 25 fps.
    """
    times = times - times[0]
    duration = times[-1] + 1.0 / src_fps
    n_out = max(1, int(round(duration * fps)))
    t_out = np.arange(n_out) / fps
    # The frame on screen at t is the last one whose start is <= t (half-frame tolerance
    # against timestamp jitter, as FFmpeg's fps filter rounds to the nearest output slot).
    idx = np.searchsorted(times, t_out + 0.5 / src_fps, side="right") - 1
    return np.clip(idx, 0, len(times) - 1)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = FPS,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    crf: int = 18,
    preset: str = "veryfast",
) -> None:
    """Write RGB uint8 frames [T, H, W, 3] as an H.264 (yuv420p) mp4, atomically.

    ``audio`` (mono float [N] at ``sample_rate``) is cropped or zero-padded to T / fps
    seconds and muxed as AAC. The file appears only when complete (temporary file + rename).
    """
    import av

    path = os.fspath(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T > 0, got {frames.dtype} {list(frames.shape)}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {width}x{height}")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix=".tmp-", dir=directory)
    os.close(fd)
    try:
        rate = Fraction(fps).limit_denominator(1001)
        with av.open(tmp, mode="w", format="mp4") as container:
            vstream = container.add_stream("libx264", rate=rate)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.options = {"crf": str(crf), "preset": preset}
            astream = None
            if audio is not None:
                astream = container.add_stream("aac", rate=AAC_SAMPLE_RATE)
                astream.layout = "mono"
            for image in frames:
                container.mux(vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(vstream.encode(None))
            if astream is not None:
                _encode_audio(container, astream, audio, sample_rate, len(frames) / float(fps))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a finished video is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int, seconds: float) -> None:
    import av

    n = int(round(seconds * sample_rate))
    wav = np.asarray(audio, np.float32).reshape(-1)[:n]
    wav = np.pad(wav, (0, n - wav.size))
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=AAC_SAMPLE_RATE)
    src = av.AudioFrame.from_ndarray(wav[None], format="flt", layout="mono")
    src.sample_rate = sample_rate
    chunk, done = 1024, 0
    for resampled in resampler.resample(src) + resampler.resample(None):
        data = resampled.to_ndarray()
        for start in range(0, data.shape[1], chunk):
            piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, start:start + chunk]), format="fltp",
                                               layout="mono")
            piece.sample_rate = AAC_SAMPLE_RATE
            # timestamps let the encoder mark its 1024 priming samples, which the mp4 edit list then
            # skips; without them every player hears the sound 21 ms late
            piece.pts, piece.time_base = done, Fraction(1, AAC_SAMPLE_RATE)
            done += piece.samples
            container.mux(stream.encode(piece))
    container.mux(stream.encode(None))


def delay_frames(frames: np.ndarray, shift: int) -> np.ndarray:
    """Frames [T, ...] delayed by ``shift`` frames against their sound: the first frame held ``shift``
    times, the length kept (the benchmark's GT+shift baseline and the SyncNet check's planted lag)."""
    if shift <= 0:
        return frames
    return np.concatenate([np.repeat(frames[:1], shift, 0), frames[:-shift]])[: len(frames)]
