"""Which raw clips a dataset has: MEAD, HDTF or a plain folder of videos -> :class:`RawClip` lists.

Nothing here decodes a video; discovery only walks folders and reads HDTF's annotation files,
so it is instant even for the full datasets. Each :class:`RawClip` names its video (and its
separate audio file, for MEAD), the segment to cut (HDTF) and the labels the corpus keeps.

Layouts:

* MEAD: ``<spk>/video/<view>/<emotion>/level_<n>/<nnn>.mp4`` with the audio at
  ``<spk>/audio/<emotion>/level_<n>/<nnn>.m4a`` (no view level). Speaker W021 ships an extra
  folder (``W021/video/1/front/...``), which is accepted. Ids follow the EDTalk lists:
  ``M003#angry#level_1#001``.
* HDTF: the user's downloaded full videos plus the release's ``<SUBSET>_annotion_time.txt``
  (sic) files, one line per video: ``Radio11.mp4 00:30-01:00 01:30-02:30``. Each interval is a
  clip, numbered from 0 in line order; ids follow the release's ``download.py``:
  ``RD_Radio11_001``.
* folder: every video under a folder; the first folder level is the speaker.

:func:`shard` splits a clip list into disjoint parts by a stable hash of the id, so several
processes (or machines) can preprocess one dataset without coordinating.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re

from stylization.data.corpus import MEAD_EMOTIONS
from stylization.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DATASETS = ("mead", "hdtf", "folder")
UNLABELLED = "unlabelled"  # the emotion of clips whose dataset has no emotion labels
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")  # what folder_clips picks up
SIDE_AUDIO_EXTENSIONS = (".wav", ".m4a", ".mp3", ".flac")  # a same-stem audio file beside a video wins
HDTF_SUBSETS = ("RD", "WDA", "WRA")
HDTF_VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov")  # what youtube downloads arrive as
HDTF_ANNOTATION_SUFFIXES = ("_annotion_time.txt", "_annotation_time.txt")  # the release's spelling first
_MEAD_LEVEL = re.compile(r"level_(\d+)")
# One HDTF time: MM:SS or H:MM:SS, seconds possibly fractional.
_HDTF_TIME = re.compile(r"(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)")


@dataclasses.dataclass(frozen=True)
class RawClip:
    """One clip to preprocess: where its pixels and sound are, and its labels."""

    id: str  # unique within the dataset; the corpus clip id
    dataset: str  # "mead" | "hdtf" | "folder"
    speaker: str  # what the train/test split groups by
    emotion: str  # one of MEAD_EMOTIONS, or "unlabelled"
    level: int  # MEAD intensity 1-3; 0 when unlabelled
    video: str  # absolute path
    audio: str | None  # separate audio file (absolute); None = the video's own audio track
    start: float | None  # seconds from the video's start; None = from the beginning
    end: float | None  # seconds from the video's start; None = to the end

    def to_json(self) -> dict:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------- MEAD


def _subdirs(path: str) -> list[str]:
    """Sorted names of the visible folders in ``path`` (none when it is not a folder)."""
    if not os.path.isdir(path):
        return []
    return sorted(n for n in os.listdir(path) if not n.startswith(".") and os.path.isdir(os.path.join(path, n)))


def _mead_view_dirs(speaker_dir: str, view: str) -> list[str]:
    """``video/<view>`` of one speaker, and ``video/<x>/<view>`` for the W021-style extra level."""
    video = os.path.join(speaker_dir, "video")
    found = [os.path.join(video, view)] if os.path.isdir(os.path.join(video, view)) else []
    found += [os.path.join(video, x, view) for x in _subdirs(video) if os.path.isdir(os.path.join(video, x, view))]
    return found


def _mead_audio(speaker_dir: str, emotion: str, level_dir: str, stem: str) -> str:
    """The clip's ``.m4a``: the standard place, else under one extra folder level, else the
    standard (missing) path so that processing reports it."""
    standard = os.path.join(speaker_dir, "audio", emotion, level_dir, stem + ".m4a")
    if not os.path.isfile(standard):
        audio = os.path.join(speaker_dir, "audio")
        for x in _subdirs(audio):
            candidate = os.path.join(audio, x, emotion, level_dir, stem + ".m4a")
            if os.path.isfile(candidate):
                return candidate
    return standard


def _mead_view_clips(speaker: str, speaker_dir: str, view_dir: str, unknown: set[str]) -> list[RawClip]:
    """Clips of one speaker's view folder; emotion folders outside MEAD_EMOTIONS go to ``unknown``."""
    clips = []
    for emotion in _subdirs(view_dir):
        if emotion not in MEAD_EMOTIONS:
            unknown.add(os.path.join(view_dir, emotion))
            continue
        for level_dir in _subdirs(os.path.join(view_dir, emotion)):
            match = _MEAD_LEVEL.fullmatch(level_dir)
            if match is None:
                log.warning("MEAD: ignoring %s (not a level_<n> folder)", os.path.join(view_dir, emotion, level_dir))
                continue
            folder = os.path.join(view_dir, emotion, level_dir)
            for name in sorted(os.listdir(folder)):
                stem, ext = os.path.splitext(name)
                if ext.lower() != ".mp4" or name.startswith("."):
                    continue
                clips.append(RawClip(
                    id=f"{speaker}#{emotion}#{level_dir}#{stem}", dataset="mead", speaker=speaker, emotion=emotion,
                    level=int(match.group(1)), video=os.path.join(folder, name),
                    audio=_mead_audio(speaker_dir, emotion, level_dir, stem), start=None, end=None))
    return clips


def mead_clips(raw: str, view: str = "front") -> list[RawClip]:
    """Every MEAD clip of camera ``view`` under ``raw`` (one folder per speaker), sorted by id.

    Emotion folders that are not MEAD's eight are skipped with a warning. A clip whose id
    appears twice (the standard and the extra-level folder both present) keeps the first.
    Raises :class:`DataError` naming ``raw`` when it holds no clip in the expected layout.
    """
    raw = _dataset_root(raw)
    by_id: dict[str, RawClip] = {}
    unknown: set[str] = set()
    for speaker in _subdirs(raw):
        speaker_dir = os.path.join(raw, speaker)
        for view_dir in _mead_view_dirs(speaker_dir, view):
            for clip in _mead_view_clips(speaker, speaker_dir, view_dir, unknown):
                if clip.id in by_id:
                    log.warning("MEAD: %s is also at %s; keeping %s", clip.id, clip.video, by_id[clip.id].video)
                    continue
                by_id[clip.id] = clip
    for folder in sorted(unknown):
        log.warning("MEAD: ignoring %s (emotion not one of %s)", folder, ", ".join(MEAD_EMOTIONS))
    if not by_id:
        raise DataError(f"no MEAD clips found; expected <speaker>/video/{view}/<emotion>/level_<n>/<nnn>.mp4 "
                        f"(audio at <speaker>/audio/<emotion>/level_<n>/<nnn>.m4a)", raw)
    return [by_id[k] for k in sorted(by_id)]


# ---------------------------------------------------------------------------------------------- HDTF


def _hdtf_seconds(text: str) -> float:
    """``MM:SS`` or ``H:MM:SS`` (seconds may be fractional) -> seconds; ValueError if malformed."""
    match = _HDTF_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"bad time {text!r} (expected MM:SS or H:MM:SS)")
    hours, minutes, seconds = match.groups()
    if float(seconds) >= 60 or (hours is not None and int(minutes) >= 60):
        raise ValueError(f"bad time {text!r} (minutes and seconds must be below 60)")
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def _hdtf_interval(text: str) -> tuple[float, float]:
    """``00:30-01:00`` -> (30.0, 60.0) seconds; ValueError if malformed or empty."""
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(f"bad interval {text!r} (expected START-END)")
    start, end = _hdtf_seconds(parts[0]), _hdtf_seconds(parts[1])
    if end <= start:
        raise ValueError(f"interval {text!r} ends before it starts")
    return start, end


def parse_hdtf_times(text: str, source: str) -> dict[str, list[tuple[float, float]]]:
    """Parse one ``<SUBSET>_annotion_time.txt`` -> {video name without extension: [(start, end) s]}.

    Intervals keep their line order (their index is the clip number) even when they overlap
    or are unordered. A leading BOM, trailing spaces and blank lines are accepted; a name
    listed twice keeps its later line (as the release's ``download.py`` does), with a warning.
    Raises :class:`DataError` naming ``source`` and the 1-based line number of a malformed line.
    """
    times: dict[str, list[tuple[float, float]]] = {}
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) < 2:
                raise ValueError("expected '<name>.mp4 MM:SS-MM:SS [MM:SS-MM:SS ...]'")
            intervals = [_hdtf_interval(f) for f in fields[1:]]
        except ValueError as exc:
            raise DataError(f"line {number}: {exc}", source) from None
        name = fields[0]
        stem, ext = os.path.splitext(name)
        name = stem if ext.lower() in HDTF_VIDEO_EXTENSIONS else name
        if name in times:
            log.warning("%s: line %d lists %s again; the later line wins", source, number, name)
        times[name] = intervals
    return times


def _walk_files(raw: str, suffixes: tuple[str, ...]) -> dict[str, str]:
    """File name -> absolute path of every visible file under ``raw`` whose name ends with one of
    ``suffixes`` (any case); a name found twice keeps the first in sorted walk order, with a warning."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(raw):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(suffixes):
                continue
            path = os.path.join(folder, name)
            if name in found:
                log.warning("ignoring %s: a file of the same name is at %s", path, found[name])
                continue
            found[name] = path
    return found


def _hdtf_annotations(files: dict[str, str], raw: str) -> dict[str, str]:
    """Subset -> path of its annotation file among ``files``; DataError when there is none."""
    found = {}
    for subset in HDTF_SUBSETS:
        for suffix in HDTF_ANNOTATION_SUFFIXES:
            if subset + suffix in files:
                found.setdefault(subset, files[subset + suffix])
    if not found:
        raise DataError(f"no HDTF annotation files found; expected <SUBSET>{HDTF_ANNOTATION_SUFFIXES[0]} "
                        f"(SUBSET one of {', '.join(HDTF_SUBSETS)}, from the HDTF release's HDTF_dataset folder) "
                        f"beside or above the downloaded videos", raw)
    return found


def _hdtf_video(files: dict[str, str], subset: str, name: str) -> str | None:
    """The downloaded video of ``name``: ``<SUBSET>_<name>.<ext>`` (download.py's naming) first."""
    for base in (f"{subset}_{name}", name):
        for ext in HDTF_VIDEO_EXTENSIONS:
            if base + ext in files:
                return files[base + ext]
    return None


def hdtf_clips(raw: str) -> tuple[list[RawClip], list[tuple[str, str]]]:
    """HDTF clips whose video is under ``raw`` (sorted by id), and (id, reason) of those whose is not.

    ``raw`` (searched recursively) holds the downloaded full-length videos, named
    ``<SUBSET>_<name>.mp4`` or ``<name>.mp4`` (also .mkv/.webm/.mov), and the release's
    annotation files. Each annotated interval becomes a clip cut at (start, end) seconds.
    Raises :class:`DataError` when there are no annotation files or none of their videos.
    """
    raw = _dataset_root(raw)
    files = _walk_files(raw, HDTF_VIDEO_EXTENSIONS + HDTF_ANNOTATION_SUFFIXES)
    clips: list[RawClip] = []
    missing: list[tuple[str, str]] = []
    for subset, annotation in sorted(_hdtf_annotations(files, raw).items()):
        with open(annotation, encoding="utf-8") as f:
            times = parse_hdtf_times(f.read(), annotation)
        for name, intervals in times.items():
            speaker = f"{subset}_{name}"
            video = _hdtf_video(files, subset, name)
            ids = [f"{speaker}_{i:03d}" for i in range(len(intervals))]
            if video is None:
                log.warning("HDTF: no video for %s (%d clips skipped)", speaker, len(ids))
                reason = f"video not found under {raw} (looked for {speaker}.mp4 and {name}.mp4, or .mkv/.webm/.mov)"
                missing += [(clip_id, reason) for clip_id in ids]
                continue
            clips += [RawClip(id=clip_id, dataset="hdtf", speaker=speaker, emotion=UNLABELLED, level=0, video=video,
                              audio=None, start=start, end=end) for clip_id, (start, end) in zip(ids, intervals)]
    if missing:
        log.warning("HDTF: %d annotated clips skipped, their videos are missing", len(missing))
    if not clips:
        raise DataError(f"none of the {len(missing)} annotated HDTF clips has its video here; expected the "
                        f"downloads named <SUBSET>_<name>.mp4 or <name>.mp4", raw)
    return sorted(clips, key=lambda c: c.id), sorted(missing)


# ---------------------------------------------------------------------------------------------- folder


def _side_audio(video: str) -> str | None:
    """A same-stem audio file beside ``video`` (first of SIDE_AUDIO_EXTENSIONS), else None."""
    stem = os.path.splitext(video)[0]
    for ext in SIDE_AUDIO_EXTENSIONS:
        if os.path.isfile(stem + ext):
            return stem + ext
    return None


def folder_clips(raw: str) -> list[RawClip]:
    """Every video under ``raw`` (recursively), sorted by id.

    The speaker is the first folder level under ``raw`` (the file stem for a video directly in
    ``raw``); the id is the path relative to ``raw`` without extension, ``/`` -> ``#``. Hidden
    files and folders are skipped. Raises :class:`DataError` when there is no video, or when
    two videos differ only by extension (their ids would clash).
    """
    raw = _dataset_root(raw)
    by_id: dict[str, RawClip] = {}
    for folder, dirs, files in os.walk(raw):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS:
                continue
            video = os.path.join(folder, name)
            parts = os.path.relpath(os.path.splitext(video)[0], raw).split(os.sep)
            clip_id = "#".join(parts)
            if clip_id in by_id:
                raise DataError(f"two videos give clip id {clip_id!r} (also {by_id[clip_id].video}); rename one",
                                video)
            by_id[clip_id] = RawClip(id=clip_id, dataset="folder", speaker=parts[0], emotion=UNLABELLED, level=0,
                                     video=video, audio=_side_audio(video), start=None, end=None)
    if not by_id:
        raise DataError(f"no videos found (looked for {' '.join(VIDEO_EXTENSIONS)} files, recursively)", raw)
    return [by_id[k] for k in sorted(by_id)]


# ---------------------------------------------------------------------------------------------- dispatch


def _dataset_root(raw: str | os.PathLike) -> str:
    """Absolute path of the dataset folder; DataError when it is not a folder."""
    raw = os.path.abspath(os.fspath(raw))
    if not os.path.isdir(raw):
        raise DataError("dataset folder not found", raw)
    return raw


def discover(dataset: str, raw: str) -> tuple[list[RawClip], list[tuple[str, str]]]:
    """Clips of ``dataset`` ("mead" (front view), "hdtf" or "folder") under ``raw``, and the
    (id, reason) of annotated clips that cannot be made (HDTF videos not downloaded)."""
    if dataset == "mead":
        return mead_clips(raw), []
    if dataset == "hdtf":
        return hdtf_clips(raw)
    if dataset == "folder":
        return folder_clips(raw), []
    raise ConfigError(f"dataset={dataset!r} is not known; use one of {', '.join(DATASETS)}")


# ---------------------------------------------------------------------------------------------- shards


def _shard_of(clip_id: str, count: int) -> int:
    """Stable shard number of an id: the same on every machine and Python run (unlike ``hash``)."""
    digest = hashlib.sha1(clip_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N; :class:`ConfigError` otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or not int(match.group(1)) < int(match.group(2)):
        raise ConfigError(f"shard={text!r} is not valid; use I/N with 0 <= I < N, e.g. 0/4 for the first of four")
    return int(match.group(1)), int(match.group(2))


def shard(clips: list[RawClip], index: int, count: int) -> list[RawClip]:
    """The clips of shard ``index`` of ``count`` (order kept): shards are disjoint, together
    they are all clips, and a clip's shard depends on its id only."""
    if not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count} is not valid; need 0 <= index < count")
    return [c for c in clips if _shard_of(c.id, count) == index]
