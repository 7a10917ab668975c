"""Video: read any video as RGB frames at 25 fps, write H.264 mp4 with the audio muxed.

Both go through PyAV (FFmpeg's libraries with libx264 and AAC), so no ffmpeg binary or
compiled extension of ours is needed.

Reading resamples to the target rate the way FFmpeg's ``fps`` filter does: output frame k
shows the source frame on screen at time k / fps (MEAD is recorded at 30 fps; the
official Style²Talker code forgot to resample it). Writing encodes yuv420p H.264 and, when
audio is given, crops or pads it to exactly the video's duration before muxing, so the
container's two streams agree within one frame. :class:`VideoWriter` takes the frames batch
by batch (a long video never has to be held in memory); :func:`write_video` is one batch.
"""

from __future__ import annotations

import contextlib
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


class VideoWriter:
    """An H.264 (yuv420p) mp4 written batch by batch, atomically; a context manager.

    ::

        with VideoWriter(path, fps, audio=wav) as writer:
            for batch in batches:  # RGB uint8 [N, H, W, 3], any N (0 too), the same H and W throughout
                writer.write(batch)

    Frames are encoded as they arrive into a temporary file in ``path``'s folder, so memory holds
    one batch and the encoder's few frames of lookahead, never the whole video. On a clean exit
    ``audio`` (mono float [M] at ``sample_rate`` Hz) is cropped or zero-padded to the duration of
    the frames actually written, T / ``fps`` seconds, muxed as AAC, and the file is renamed to
    ``path``. On any exception, or when no frame was written (ValueError), the temporary file is
    removed and ``path`` is left as it was. ``crf`` and ``preset`` are libx264's.
    """

    def __init__(self, path: str | os.PathLike, fps: float = FPS, audio: np.ndarray | None = None,
                 sample_rate: int = SAMPLE_RATE, crf: int = 18, preset: str = "veryfast"):
        self.path, self.fps = os.fspath(path), fps
        self.audio = None if audio is None else np.asarray(audio, np.float32).reshape(-1)
        self.sample_rate, self.crf, self.preset = sample_rate, crf, preset
        self.n_frames = 0  # frames written so far
        self._tmp: str | None = None
        self._container = self._video = self._sound = None

    def __enter__(self) -> VideoWriter:
        import av

        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(suffix=".mp4", prefix=".tmp-", dir=directory)
        os.close(fd)
        try:
            self._container = av.open(self._tmp, mode="w", format="mp4")
        except BaseException:
            self._discard()
            raise
        return self

    def write(self, frames: np.ndarray) -> None:
        """Encode RGB uint8 frames [N, H, W, 3] (H and W even, as yuv420p needs; fixed by the first frame)."""
        import av

        if self._container is None:
            raise RuntimeError("VideoWriter.write outside its with block")
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
        height, width = frames.shape[1:3]
        if self._video is None:
            if height % 2 or width % 2:
                raise ValueError(f"yuv420p needs even frame sizes, got {width}x{height}")
            # every stream is added before the first packet: the mp4 header is written with it
            self._video = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
            self._video.options = {"crf": str(self.crf), "preset": self.preset}
            if self.audio is not None:
                self._sound = self._container.add_stream("aac", rate=AAC_SAMPLE_RATE)
                self._sound.layout = "mono"
        elif (width, height) != (self._video.width, self._video.height):
            raise ValueError(f"frame size changed from {self._video.width}x{self._video.height} to {width}x{height}")
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            self._container.mux(self._video.encode(frame))
            self.n_frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._discard()  # after a clean finish there is nothing left to discard

    def _finish(self) -> None:
        if self.n_frames == 0:
            raise ValueError(f"no frames were written to {self.path}: a video needs T > 0 frames")
        self._container.mux(self._video.encode(None))
        if self._sound is not None:
            _encode_audio(self._container, self._sound, self.audio, self.sample_rate, self.n_frames / float(self.fps))
        self._container.close()
        self._container = None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp makes it private; a finished video is an ordinary file
        os.replace(self._tmp, self.path)
        self._tmp = None

    def _discard(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):  # the error that brought us here is the one to report
                self._container.close()
            self._container = None
        if self._tmp is not None and os.path.exists(self._tmp):
            os.remove(self._tmp)
        self._tmp = None


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = FPS,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    crf: int = 18,
    preset: str = "veryfast",
) -> None:
    """Write RGB uint8 frames [T, H, W, 3] (T > 0) as an H.264 (yuv420p) mp4, atomically.

    ``audio`` (mono float [N] at ``sample_rate``) is cropped or zero-padded to T / fps
    seconds and muxed as AAC. One :class:`VideoWriter` batch: the file appears only when
    complete (temporary file + rename).
    """
    with VideoWriter(path, fps, audio, sample_rate, crf, preset) as writer:
        writer.write(frames)


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int, seconds: float) -> None:
    """Mono float audio [N] at ``sample_rate`` Hz -> AAC packets of exactly ``seconds`` (cropped or
    zero-padded), resampled to 48 kHz one second at a time: the resampler keeps its filter state
    between pieces, so the samples equal a single pass over the whole track, without its copies."""
    import av

    n = int(round(seconds * sample_rate))
    wav = np.asarray(audio, np.float32).reshape(-1)
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=AAC_SAMPLE_RATE)
    done = 0

    def encode(resampled_frames) -> None:
        nonlocal done
        for resampled in resampled_frames:
            data = resampled.to_ndarray()
            for begin in range(0, data.shape[1], 1024):
                part = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, begin:begin + 1024]), format="fltp",
                                                  layout="mono")
                part.sample_rate = AAC_SAMPLE_RATE
                # timestamps let the encoder mark its 1024 priming samples, which the mp4 edit list then
                # skips; without them every player hears the sound 21 ms late
                part.pts, part.time_base = done, Fraction(1, AAC_SAMPLE_RATE)
                done += part.samples
                container.mux(stream.encode(part))

    for start in range(0, n, sample_rate):
        stop = min(start + sample_rate, n)
        piece = wav[start:stop]
        piece = np.pad(piece, (0, stop - start - piece.size))  # past the audio's end: silence
        src = av.AudioFrame.from_ndarray(piece[None], format="flt", layout="mono")
        src.sample_rate = sample_rate
        encode(resampler.resample(src))
    encode(resampler.resample(None))
    container.mux(stream.encode(None))


def delay_frames(frames: np.ndarray, shift: int) -> np.ndarray:
    """Frames [T, ...] delayed by ``shift`` frames against their sound: the first frame held ``shift``
    times, the length kept (the benchmark's GT+shift baseline and the SyncNet check's planted lag)."""
    if shift <= 0:
        return frames
    return np.concatenate([np.repeat(frames[:1], shift, 0), frames[:-shift]])[: len(frames)]
