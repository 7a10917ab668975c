"""Decoding one raw clip, streamed: its frames at 25 fps and its 16 kHz audio segment.

:func:`iter_frames` never holds a whole video: HDTF sources are minutes of 1080p. It seeks
to a keyframe before the segment start, decodes forward and resamples by frame timestamps
with the rule of :func:`stylization.data.video.resample_indices` (output frame k shows the
source frame on screen at time start + k / fps, with half a source frame of tolerance), so a
whole file gives exactly :func:`~stylization.data.video.read_video`'s frames, and variable
frame rate phone videos are resampled by when each frame is really shown. Frames that no
output shows are never converted to RGB.
"""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Iterable, Iterator

import numpy as np

from stylization.constants import FPS, SAMPLE_RATE
from stylization.data.audio import load_audio
from stylization.errors import DataError


def _open_video(path: str):
    """The opened container and its first video stream; DataError for missing or unreadable files."""
    import av

    if not os.path.isfile(path):
        raise DataError("video file not found", path)
    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:
        raise DataError(f"not a readable video ({exc.strerror or exc})", path) from None
    if not container.streams.video:
        container.close()
        raise DataError("no video stream", path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


SEEK_MARGIN_S = 1.0  # seek this far before the segment start (see _seek)


def _seek(container, stream, seconds: float, path: str) -> None:
    """Move to a keyframe at least SEEK_MARGIN_S before ``seconds`` of stream time.

    FFmpeg's backward seek in mp4 compares decoding timestamps, which lead presentation ones
    by the B-frame delay, so seeking exactly to ``seconds`` can land on a keyframe shown just
    after it and lose the frame on screen at ``seconds``; the margin covers that delay. The
    frames in between are decoded and skipped (cheap: they are never converted to RGB).
    """
    import av

    target = seconds - SEEK_MARGIN_S
    if stream.time_base is None or target <= 0:
        return
    try:
        container.seek(int(target / float(stream.time_base)), stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError as exc:
        raise DataError(f"cannot seek to {target:.2f} s ({exc.strerror or exc})", path) from None


def _timed_frames(container, stream, path: str, seeked: bool) -> Iterator[tuple[float, object]]:
    """(presentation time in s, av.VideoFrame) as the decoder outputs them; DataError on a corrupt stream.

    Frames without a timestamp are placed at index / average rate (what read_video does),
    which is only meaningful when decoding from the first frame (not ``seeked``).
    """
    import av

    rate = float(stream.average_rate or FPS)
    n = 0
    try:
        for frame in container.decode(stream):
            if frame.time is None and seeked:
                raise DataError("frames carry no timestamps, so a segment cannot be cut", path)
            yield (frame.time if frame.time is not None else n / rate), frame
            n += 1
    except av.error.FFmpegError as exc:
        raise DataError(f"corrupt video ({exc.strerror or exc}) after {n} frames", path) from None


def _resample(timed: Iterable[tuple[float, object]], fps: float, src_fps: float, max_out: float,
              min_out: int) -> Iterator[object]:
    """Pick the source frame shown at each output time k / fps from (time, frame) pairs, streaming.

    ``timed`` gives times relative to the output's time 0 (negative before it). Exactly
    :func:`resample_indices`: output k shows the last frame with time <= k / fps + 0.5 / src_fps
    (the first frame for earlier outputs); the output spans the last frame time + 1 / src_fps
    and at least ``min_out`` (1 for a whole file, as read_video; 0 for a segment that may start
    after the video ends) and at most ``max_out`` frames. A picked frame waits in ``pending``
    until enough of the stream is seen to know that the output reaches that far.
    """
    tolerance = 0.5 / src_fps
    pending: collections.deque = collections.deque()
    emitted, prev, last, complete = 0, None, 0.0, False
    for time, frame in timed:
        # Outputs before ``frame`` is on screen (with tolerance) show ``prev``.
        while prev is not None and (k := emitted + len(pending)) < max_out and k / fps + tolerance < time:
            pending.append(prev)
        prev, last = frame, time
        sure = min(max_out, int(round((time + 1.0 / src_fps) * fps)))  # the output has at least this many
        while pending and emitted < sure:
            yield pending.popleft()
            emitted += 1
        if emitted + len(pending) >= max_out:
            complete = True
            break
    if prev is None:
        return
    n_out = max_out if complete else min(max_out, max(min_out, int(round((last + 1.0 / src_fps) * fps))))
    while emitted < n_out:
        yield pending.popleft() if pending else prev
        emitted += 1


def _rgb(frame, max_side: int | None) -> np.ndarray:
    """av.VideoFrame -> RGB uint8 [H, W, 3], its longer side shrunk to ``max_side`` px (INTER_AREA)."""
    image = frame.to_ndarray(format="rgb24")
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image
    import cv2

    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _converted(frames: Iterator[object], max_side: int | None) -> Iterator[np.ndarray]:
    """Convert each picked frame once, however many outputs repeat it."""
    last_frame, last_image = None, None
    for frame in frames:
        if frame is not last_frame:
            last_frame, last_image = frame, _rgb(frame, max_side)
        yield last_image


def iter_frames(path: str | os.PathLike, fps: float = FPS, start: float | None = None, end: float | None = None,
                max_side: int | None = None) -> Iterator[np.ndarray]:
    """Stream RGB uint8 frames [H, W, 3] of ``path`` resampled to ``fps``, from ``start`` to ``end`` s.

    ``start`` / ``end`` are seconds from the video's start (None: its first frame / its end);
    the output has round((end - start) * fps) frames, fewer when the video ends earlier.
    ``max_side`` (px) shrinks each frame so its longer side is at most that. A repeated frame
    is yielded as the same array object: copy before writing into it. Bad arguments raise
    ValueError at once; the file is opened on the first ``next``, which raises
    :class:`DataError` naming the file when it is missing, corrupt (with how many frames were
    read) or has no frames in the segment.
    """
    if start is not None and (start < 0 or (end is not None and end <= start)):
        raise ValueError(f"segment {start}-{end} s: need 0 <= start < end")
    max_out = np.inf if end is None else int(round((end - (start or 0.0)) * fps))
    if max_out < 1:
        raise ValueError(f"segment {start}-{end} s is shorter than one frame at {fps} fps")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    return _converted(_segment_frames(os.fspath(path), fps, start, max_out), max_side)


def _segment_frames(path: str, fps: float, start: float | None, max_out: float) -> Iterator[object]:
    """The av.VideoFrame shown at each output time (see :func:`iter_frames`); the container
    stays open while the generator runs."""
    container, stream = _open_video(path)
    with container:
        src_fps = float(stream.average_rate or fps)
        if start is None:
            timed = _timed_frames(container, stream, path, seeked=False)
            first = next(timed, None)
            if first is None:
                raise DataError("video has no decodable frames", path)
            origin = first[0]  # read_video's time 0: the first frame, wherever the stream starts
            timed = itertools.chain([first], timed)
        else:
            # "Seconds from the video's start" count from the stream's declared start time.
            origin = start + (float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0)
            _seek(container, stream, origin, path)
            timed = _timed_frames(container, stream, path, seeked=True)
        relative = ((t - origin, frame) for t, frame in timed)
        n = 0
        for frame in _resample(relative, fps, src_fps, max_out, min_out=1 if start is None else 0):
            n += 1
            yield frame
        if n == 0:
            raise DataError(f"no frames from {start} s on (the video is shorter)", path)


def decode_audio(path: str | os.PathLike, start: float | None = None, end: float | None = None) -> np.ndarray:
    """16 kHz mono float32 samples [N] of ``path`` (any audio or video file) between ``start`` and
    ``end`` seconds (None: its beginning / end); shorter when the audio ends before ``end``.

    Raises :class:`DataError` naming the file when it is missing, undecodable, without audio,
    or has no samples in the segment.
    """
    if start is not None and end is not None and end <= start:
        raise ValueError(f"segment end {end} s must come after its start {start} s")
    wav = load_audio(path, SAMPLE_RATE)
    first = 0 if start is None else int(round(start * SAMPLE_RATE))
    last = wav.size if end is None else int(round(end * SAMPLE_RATE))
    segment = wav[first:last]
    if segment.size == 0:
        raise DataError(f"no audio between {start} s and {end} s (the audio lasts {wav.size / SAMPLE_RATE:.2f} s)",
                        os.fspath(path))
    return segment
