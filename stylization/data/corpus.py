"""The processed-clip corpus format shared by every dataset (synthetic, MEAD, HDTF).

A corpus root holds ``index.jsonl``, one JSON object per clip::

    {"id": "M003_happy_2_014", "speaker": "M003", "emotion": "happy", "level": 2,
     "split": "train", "n_frames": 75, "fps": 25,
     "texts": ["A man speaks with a broad smile ...", ...],
     "files": {"coeffs": "clips/M003_happy_2_014/coeffs.npy",
               "landmarks": "clips/M003_happy_2_014/landmarks.npy",
               "audio": "clips/M003_happy_2_014/audio.wav",
               "video": "clips/M003_happy_2_014/video.mp4"}}

``files`` paths are relative to the root; extra entries (styled videos, caches) are
allowed. Per clip: ``coeffs.npy`` float32 [T, 260], ``landmarks.npy`` float32 [T, 68, 2] in
pixels of the stored frames, ``audio.wav`` 16 kHz mono, ``video.mp4`` 25 fps. data/README.md
describes the format for users.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Iterable

import numpy as np

from stylization.constants import COEFF_DIM, FPS, N_LANDMARKS, SAMPLE_RATE, SAMPLES_PER_FRAME
from stylization.data.audio import load_audio
from stylization.data.coeffs import validate_coeffs
from stylization.errors import DataError

INDEX_NAME = "index.jsonl"
REQUIRED_FILES = ("coeffs", "landmarks", "audio", "video")
SPLITS = ("train", "val", "test")
MEAD_EMOTIONS = ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")


@dataclasses.dataclass(frozen=True)
class ClipRecord:
    """One line of ``index.jsonl``."""

    id: str
    speaker: str
    emotion: str
    level: int
    split: str
    n_frames: int
    fps: float
    texts: tuple[str, ...]
    files: dict[str, str]

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["texts"] = list(self.texts)
        return d

    @classmethod
    def from_json(cls, d: dict, source: str) -> "ClipRecord":
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = [f for f in fields if f not in d]
        if missing:
            raise DataError(f"clip {d.get('id', '?')!r} lacks fields {missing}", source)
        files = d["files"]
        if not isinstance(files, dict) or any(k not in files for k in REQUIRED_FILES):
            raise DataError(f"clip {d['id']!r}: 'files' must name at least {list(REQUIRED_FILES)}", source)
        if d["split"] not in SPLITS:
            raise DataError(f"clip {d['id']!r}: split {d['split']!r} is not one of {list(SPLITS)}", source)
        texts = d["texts"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DataError(f"clip {d['id']!r}: 'texts' must be a list of strings", source)
        return cls(id=str(d["id"]), speaker=str(d["speaker"]), emotion=str(d["emotion"]), level=int(d["level"]),
                   split=d["split"], n_frames=int(d["n_frames"]), fps=float(d["fps"]), texts=tuple(texts),
                   files={str(k): str(v) for k, v in files.items()})


def read_index(root: str | os.PathLike) -> list[ClipRecord]:
    """Parse ``root/index.jsonl``; errors name the file and line."""
    path = os.path.join(os.fspath(root), INDEX_NAME)
    if not os.path.isfile(path):
        raise DataError(f"no {INDEX_NAME}: not a corpus root in the processed-clip format (see data/README.md)",
                        os.fspath(root))
    records, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"line {line_no} is not JSON ({exc.msg})", path) from None
            rec = ClipRecord.from_json(d, f"{path}:{line_no}")
            if rec.id in seen:
                raise DataError(f"line {line_no}: duplicate clip id {rec.id!r}", path)
            seen.add(rec.id)
            records.append(rec)
    if not records:
        raise DataError("index lists no clips", path)
    return records


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one (a
    temporary file beside it, then a rename)."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """:func:`write_text_atomic` of ``obj`` as JSON."""
    write_text_atomic(path, json.dumps(obj))


def write_index(root: str | os.PathLike, records: Iterable[ClipRecord]) -> None:
    """Write ``root/index.jsonl`` atomically."""
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".index-", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
    os.replace(tmp, os.path.join(root, INDEX_NAME))


class Corpus:
    """A corpus root and its clips, with loaders for the per-clip files."""

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(root)
        self.records = read_index(self.root)
        self.by_id = {r.id: r for r in self.records}

    def path(self, rec: ClipRecord, kind: str) -> str:
        if kind not in rec.files:
            raise DataError(f"clip {rec.id!r} has no {kind!r} file", os.path.join(self.root, INDEX_NAME))
        return os.path.join(self.root, rec.files[kind])

    def clips(self, split: str | None = None, speakers: Iterable[str] | None = None) -> list[ClipRecord]:
        keep = None if speakers is None else set(speakers)
        return [r for r in self.records if (split is None or r.split == split) and (keep is None or r.speaker in keep)]

    def speakers(self, split: str | None = None) -> list[str]:
        return sorted({r.speaker for r in self.clips(split)})

    def load_coeffs(self, rec: ClipRecord) -> np.ndarray:
        """float32 [T, 260]."""
        path = self.path(rec, "coeffs")
        arr = _load_npy(path)
        validate_coeffs(arr, path, n_frames=rec.n_frames)
        if arr.shape[1] != COEFF_DIM:
            raise DataError(f"stored coefficients need {COEFF_DIM} columns (crop included), got {arr.shape[1]}", path)
        return arr.astype(np.float32, copy=False)

    def load_landmarks(self, rec: ClipRecord) -> np.ndarray:
        """float32 [T, 68, 2], pixels of the stored frames."""
        path = self.path(rec, "landmarks")
        arr = _load_npy(path)
        if arr.shape != (rec.n_frames, N_LANDMARKS, 2):
            raise DataError(f"expected landmarks of shape [{rec.n_frames}, {N_LANDMARKS}, 2], got {list(arr.shape)}",
                            path)
        return arr.astype(np.float32, copy=False)

    def load_audio(self, rec: ClipRecord) -> np.ndarray:
        """16 kHz mono float32 [N]."""
        return load_audio(self.path(rec, "audio"))

    def load_phonemes(self, rec: ClipRecord) -> np.ndarray:
        """int64 [T]: one phoneme index per frame (:data:`stylization.data.phonemes.PHONEMES`), from the
        optional ``phonemes`` file (the synthetic corpus's, aligned to its known sentences)."""
        from stylization.data.phonemes import PHONEMES

        path = self.path(rec, "phonemes")
        arr = _load_npy(path)
        if arr.shape != (rec.n_frames,) or not np.issubdtype(arr.dtype, np.integer) or \
                (arr.size and not 0 <= int(arr.min()) <= int(arr.max()) < len(PHONEMES)):
            raise DataError(f"expected [{rec.n_frames}] phoneme indices 0..{len(PHONEMES) - 1}, got {arr.dtype} "
                            f"{list(arr.shape)}", path)
        return arr.astype(np.int64, copy=False)

    def check_clip(self, rec: ClipRecord) -> str | None:
        """A one-line description of what is wrong with the clip's files, or None when sound.

        Reads only headers: array shapes (memory-mapped) and the audio length.
        """
        import soundfile

        try:
            for kind in REQUIRED_FILES:
                if not os.path.isfile(self.path(rec, kind)):
                    return f"missing {kind} file {rec.files[kind]}"
            coeffs = np.load(self.path(rec, "coeffs"), mmap_mode="r")
            if coeffs.shape != (rec.n_frames, COEFF_DIM):
                return f"coeffs.npy has shape {list(coeffs.shape)}, index says [{rec.n_frames}, {COEFF_DIM}]"
            lm = np.load(self.path(rec, "landmarks"), mmap_mode="r")
            if lm.shape != (rec.n_frames, N_LANDMARKS, 2):
                return f"landmarks.npy has shape {list(lm.shape)}, index says [{rec.n_frames}, {N_LANDMARKS}, 2]"
            info = soundfile.info(self.path(rec, "audio"))
            audio_frames = info.frames * SAMPLE_RATE / info.samplerate / SAMPLES_PER_FRAME
            if audio_frames < rec.n_frames - 1:
                return f"audio covers {audio_frames:.1f} frames, index says {rec.n_frames}"
        except Exception as exc:  # a damaged file: report it, never crash the scan
            return f"unreadable file ({type(exc).__name__}: {exc})"
        return None


def _load_npy(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise DataError("file not found", path)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"not a readable .npy array ({exc})", path) from None


def assign_speaker_split(records: list[ClipRecord], test_speakers: Iterable[str]) -> list[ClipRecord]:
    """Records with ``split`` set to "test" for ``test_speakers`` and "train" for the rest."""
    test = set(test_speakers)
    unknown = test - {r.speaker for r in records}
    if unknown:
        raise DataError(f"test speakers {sorted(unknown)} are not in the corpus")
    return [dataclasses.replace(r, split="test" if r.speaker in test else "train") for r in records]


def check_speaker_disjoint(records: list[ClipRecord]) -> None:
    """Raise :class:`DataError` if a speaker appears in more than one split."""
    splits: dict[str, set[str]] = {}
    for r in records:
        splits.setdefault(r.speaker, set()).add(r.split)
    shared = sorted(s for s, sp in splits.items() if len(sp) > 1)
    if shared:
        raise DataError(f"splits are not speaker-disjoint: speakers {shared[:10]} appear in several splits")


def write_clip(
    root: str | os.PathLike,
    clip_id: str,
    speaker: str,
    emotion: str,
    level: int,
    split: str,
    texts: list[str],
    coeffs: np.ndarray,
    landmarks: np.ndarray,
    audio: np.ndarray,
    frames: np.ndarray,
    fps: float = float(FPS),
    extra_files: dict[str, str] | None = None,
) -> ClipRecord:
    """Write one clip's standard files under ``root/clips/<clip_id>/`` and return its record.

    coeffs float [T, 260]; landmarks float [T, 68, 2] (pixels of ``frames``); audio mono
    16 kHz float; frames uint8 [T, H, W, 3]. ``extra_files`` maps more kinds to paths that
    the caller wrote (relative to ``root``). The index is written separately
    (:func:`write_index`) once every clip is done.
    """
    from stylization.data.audio import save_wav
    from stylization.data.video import write_video

    n = len(coeffs)
    validate_coeffs(coeffs, clip_id, n_frames=n)
    if np.asarray(coeffs).shape[1] != COEFF_DIM or landmarks.shape != (n, N_LANDMARKS, 2) or len(frames) != n:
        raise ValueError(f"clip {clip_id}: coeffs [T, {COEFF_DIM}], landmarks [T, {N_LANDMARKS}, 2] and T frames "
                         "must agree")
    rel = os.path.join("clips", clip_id)
    directory = os.path.join(os.fspath(root), rel)
    os.makedirs(directory, exist_ok=True)
    files = {"coeffs": f"{rel}/coeffs.npy", "landmarks": f"{rel}/landmarks.npy", "audio": f"{rel}/audio.wav",
             "video": f"{rel}/video.mp4"}
    np.save(os.path.join(directory, "coeffs.npy"), np.asarray(coeffs, np.float32))
    np.save(os.path.join(directory, "landmarks.npy"), np.asarray(landmarks, np.float32))
    save_wav(os.path.join(directory, "audio.wav"), audio)
    write_video(os.path.join(directory, "video.mp4"), frames, fps=fps, audio=audio)
    files.update(extra_files or {})
    return ClipRecord(id=clip_id, speaker=speaker, emotion=emotion, level=level, split=split, n_frames=n, fps=fps,
                      texts=tuple(texts), files=files)
