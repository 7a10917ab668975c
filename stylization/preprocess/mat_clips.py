"""Other projects' 3DMM ``.mat`` files as corpus clips, and corpus clips as those files.

``scripts/import_mat.py`` and ``scripts/export_mat.py`` are the commands; this module is the work.

:func:`import_clip` — a StyleTalk / DreamTalk / PIRenderer / SadTalker coefficient file
(:func:`~stylization.preprocess.mat3dmm.read_3dmm`; the file does not say its frame rate, the
caller does) and the clip's speech -> one clip of a corpus root in the processed-clip format
(data/README.md), added to ``index.jsonl`` (created when absent):

* coefficients resampled to 25 fps; their frame count T is the clip's length;
* audio decoded to 16 kHz mono and cut or zero-padded at its end to T frames of samples. Audio
  that lasts less than T − 1 frames is refused (the tolerance of
  :meth:`~stylization.data.corpus.Corpus.check_clip`: a wrong ``fps`` shows here), and audio more
  than 0.5 s longer than the coefficients gives a warning (its end is cut);
* landmarks: the face model's projection of the coefficients into a 256 px frame
  (:meth:`~stylization.data.face_model.FaceModel.landmarks_from_coeffs`), i.e. the face where the
  coefficients put it in Deep3DFaceRecon's aligned crop, scaled to 256;
* frames: the format requires a video (``REQUIRED_FILES``). Given one, it is decoded at 25 fps and
  its centre square resized to 256² (it must already be a face crop; Deep3DFaceRecon's aligned
  224² crops, the images the coefficients describe, match the landmarks exactly); one missing
  frame at the end is repeated, more is an error. Without one, a stand-in face is drawn from
  the landmarks (the synthetic corpus's renderer, its look picked by the speaker's name), so the
  coefficient stages train on the clip and its previews show the motion;
* texts: given, or described from geometric AU estimates and the emotion label (what
  preprocessing does, without a neutral reference clip).

Everything is read and checked before anything is written; the clip is written by
:func:`stylization.preprocess.runner.write_processed` (a private ``.partial`` directory, then one
rename) and the index rewritten atomically, under a lock on the root, so a failed or interrupted
import leaves the corpus as it was (with ``overwrite``, a failure between the clip's rename and
the index's leaves the new files under the old index line).

:func:`export_clip` — a clip directory's ``coeffs.npy`` -> a ``.mat`` every one of those projects
reads (:func:`~stylization.preprocess.mat3dmm.write_3dmm`), at the frame rate asked for.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from stylization.constants import COEFF_DIM, FACE_CROP_SIZE, FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, WINDOW_FRAMES
from stylization.data.corpus import (INDEX_NAME, MEAD_EMOTIONS, SPLITS, ClipRecord, read_index, write_index,
                                     write_json_atomic)
from stylization.errors import ConfigError, DataError
from stylization.preprocess.sources import UNLABELLED

log = logging.getLogger(__name__)

DATASET = "mat3dmm"  # the ``dataset`` of an imported clip's record.json
LONGER_AUDIO_WARNING_S = 0.5  # audio this much longer than the coefficients is worth a warning
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.#+-]*")


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """What :func:`import_clip` adds to the corpus (``configs/import_mat.yaml`` documents each)."""

    fps: float = 30.0  # frame rate of the .mat rows (StyleTalk's samples: 30; DreamTalk's, SadTalker's: 25)
    video: str | None = None
    clip_id: str | None = None  # None: the .mat file's name
    speaker: str | None = None  # None: the clip id
    emotion: str = UNLABELLED
    level: int | None = None  # None: 0 when unlabelled, else 1
    split: str = "train"
    texts: tuple[str, ...] | None = None  # None: described from the coefficients
    texts_per_clip: int = 5
    face_model: str = "stand_in"
    overwrite: bool = False
    seed: int = 0
    phonemes: str | None = None  # the official phoneme file (StyleTalk's <name>_seq.json: one index per .mat row)

    def resolved(self, mat: str) -> "ImportOptions":
        """The options with their defaults filled in and checked (:class:`ConfigError` naming the option)."""
        clip_id = self.clip_id if self.clip_id is not None else re.sub(r"[^A-Za-z0-9_.#+-]", "_", Path(mat).stem)
        if not _ID.fullmatch(clip_id):
            raise ConfigError(f"id={clip_id!r}: a clip id is letters, digits and _ . # + - (not first)")
        speaker = self.speaker if self.speaker is not None else clip_id
        if not speaker.strip():
            raise ConfigError("speaker= must not be empty")
        emotions = (*MEAD_EMOTIONS, UNLABELLED)
        if self.emotion not in emotions:
            raise ConfigError(f"emotion={self.emotion!r} is not one of {list(emotions)}")
        level = self.level if self.level is not None else (0 if self.emotion == UNLABELLED else 1)
        allowed = (0,) if self.emotion == UNLABELLED else (1, 2, 3)
        if level not in allowed:
            raise ConfigError(f"level={level} with emotion={self.emotion}: the level must be one of {list(allowed)}")
        if self.split not in SPLITS:
            raise ConfigError(f"split={self.split!r} is not one of {list(SPLITS)}")
        if not (self.fps > 0 and np.isfinite(self.fps)):
            raise ConfigError(f"fps={self.fps}: the .mat's frame rate must be a positive number")
        if self.texts is not None and not all(t.strip() for t in self.texts):
            raise ConfigError("texts= holds an empty description (separate several with |)")
        if self.texts is None and self.texts_per_clip < 1:
            raise ConfigError(f"texts_per_clip={self.texts_per_clip}: at least 1")
        if self.face_model != "stand_in" and not os.path.isfile(self.face_model):
            raise ConfigError(f"face_model={self.face_model}: no such file (stand_in or a BFM_model_front.mat)")
        return dataclasses.replace(self, clip_id=clip_id, speaker=speaker, level=level)


def split_texts(value: str | None) -> tuple[str, ...] | None:
    """The ``texts=`` option (descriptions separated by ``|``) -> the descriptions, or None."""
    if value is None:
        return None
    return tuple(t.strip() for t in str(value).split("|"))


def import_clip(root: str | os.PathLike, mat: str | os.PathLike, audio: str | os.PathLike,
                options: ImportOptions = ImportOptions()) -> dict:
    """Add the clip of ``mat`` + ``audio`` (+ ``options.video``) to the corpus at ``root`` (see the
    module docstring); returns a summary (``id``, ``n_frames``, ``video``: file | stand_in, ...).

    Raises :class:`ConfigError` for bad options or an id already in the corpus (without
    ``overwrite``), :class:`DataError` naming the file for missing, unreadable or too short input.
    """
    root, mat, audio = os.fspath(root), os.fspath(mat), os.fspath(audio)
    o = options.resolved(mat)
    if os.path.exists(root) and not os.path.isdir(root):
        raise ConfigError(f"out={root} is a file; the corpus root must be a directory")
    _existing(root, o)  # a broken index or a taken id fails before the work
    record, replaced = _write(root, mat, audio, o, _clip_arrays(mat, audio, o))
    return {"out": root, "id": record.id, "n_frames": record.n_frames, "seconds": round(record.n_frames / FPS, 2),
            "video": "file" if o.video else "stand_in", "texts": len(record.texts), "replaced": replaced}


def _clip_arrays(mat: str, audio: str, o: ImportOptions) -> dict:
    """Read and check every input -> what :func:`~stylization.preprocess.runner.write_processed` takes:
    ``coeffs`` [T, 260], ``landmarks`` [T, 68, 2], ``audio`` [T·640], ``frames`` [T, 256, 256, 3],
    ``box`` (the crop square in source pixels), and the ``texts``."""
    import torch

    from stylization.data.audio import fit_to_frames
    from stylization.data.coeffs import validate_coeffs
    from stylization.data.face_model import build_face_model
    from stylization.preprocess.decode import decode_audio
    from stylization.preprocess.mat3dmm import read_3dmm

    coeffs = read_3dmm(mat, o.fps)
    validate_coeffs(coeffs, mat)
    n = len(coeffs)
    if n < WINDOW_FRAMES:
        log.warning("%s: %d frames at %d fps, shorter than the %d-frame window: training skips the clip",
                    mat, n, FPS, WINDOW_FRAMES)
    wav = decode_audio(audio)
    seconds, wanted = wav.size / SAMPLE_RATE, n / FPS
    if wav.size < (n - 1) * SAMPLES_PER_FRAME:
        raise DataError(f"the audio lasts {seconds:.2f} s, the coefficients {wanted:.2f} s ({n} frames at {FPS} fps "
                        f"from fps={o.fps:g}); the audio must cover them (is fps= the .mat's frame rate?)", audio)
    if seconds > wanted + LONGER_AUDIO_WARNING_S:
        log.warning("%s: the audio lasts %.2f s, the coefficients %.2f s: its end is cut (is fps=%g the .mat's "
                    "frame rate?)", audio, seconds, wanted, o.fps)
    if o.face_model == "stand_in":
        log.warning("landmarks from the stand-in face model: a .mat holds BFM coefficients, so they are approximate "
                    "(face_model=PATH/BFM_model_front.mat gives the real ones)")
    landmarks = build_face_model(o.face_model).landmarks_from_coeffs(torch.from_numpy(coeffs), FACE_CROP_SIZE)
    landmarks = landmarks.numpy().astype(np.float32)
    if not np.isfinite(landmarks).all():
        raise DataError("the coefficients put the face behind the camera (non-finite landmarks)", mat)
    if o.video:
        frames, box = _video_frames(o.video, n)
    else:
        frames, box = _stand_in_frames(landmarks, o.speaker), (FACE_CROP_SIZE / 2, FACE_CROP_SIZE / 2, FACE_CROP_SIZE)
    texts = list(o.texts) if o.texts is not None else _describe(landmarks, coeffs, o)
    result = {"coeffs": coeffs, "landmarks": landmarks, "audio": fit_to_frames(wav, n), "frames": frames, "box": box,
              "texts": texts}
    if o.phonemes:
        from stylization.data.phonemes import read_official_json, resample_labels

        labels = read_official_json(o.phonemes)
        if len(labels) / o.fps < (n - 1) / FPS:
            raise DataError(f"{len(labels)} phonemes at {o.fps:g} fps last {len(labels) / o.fps:.2f} s, the "
                            f"coefficients {n / FPS:.2f} s: the file must cover them", o.phonemes)
        result["phonemes"] = resample_labels(labels, o.fps, FPS, n)
    return result


def _video_frames(path: str, n_frames: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The first ``n_frames`` frames of ``path`` at 25 fps, centre square resized to 256², and that
    square (cx, cy, side) in source pixels."""
    import itertools

    from stylization.preprocess.decode import iter_frames
    from stylization.preprocess.tracking import crop_frame

    frames, box = [], None
    for frame in itertools.islice(iter_frames(path, FPS), n_frames):
        h, w = frame.shape[:2]
        box = (w / 2, h / 2, min(w, h))
        frames.append(crop_frame(frame, box, FACE_CROP_SIZE))
    if len(frames) < n_frames - 1:
        raise DataError(f"the video has {len(frames)} frames at {FPS} fps, the coefficients {n_frames}", path)
    frames += frames[-1:] * (n_frames - len(frames))
    return np.stack(frames), box


def _stand_in_frames(landmarks: np.ndarray, speaker: str) -> np.ndarray:
    """A drawn face per frame (the synthetic corpus's renderer), the same look for the same speaker."""
    from stylization.data.synthetic.profiles import make_speaker
    from stylization.data.synthetic.render import render_face

    look = make_speaker(int(hashlib.md5(speaker.encode()).hexdigest()[:8], 16) % 100_000, seed=0)
    return np.stack([render_face(p, look, FACE_CROP_SIZE) for p in landmarks])


def _describe(landmarks: np.ndarray, coeffs: np.ndarray, o: ImportOptions) -> list[str]:
    """Emotion texts from geometric AU estimates, as preprocessing writes them (no neutral reference)."""
    from stylization.preprocess.aus import geometric_aus
    from stylization.text.emotion_text import describe_aus

    aus = geometric_aus(landmarks, coeffs)
    rng = np.random.default_rng([o.seed, int(hashlib.md5(o.clip_id.encode()).hexdigest()[:8], 16)])
    return describe_aus(aus, None if o.emotion == UNLABELLED else o.emotion, "A person", o.texts_per_clip, rng)


def _read_records(root: str) -> list[ClipRecord]:
    """The root's index (none yet: an empty list; an index without clips counts as empty)."""
    path = os.path.join(root, INDEX_NAME)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        if not any(line.strip() for line in f):
            return []
    return read_index(root)


def _existing(root: str, o: ImportOptions) -> bool:
    """Whether the clip is in the corpus already (index or directory); :class:`ConfigError` unless
    ``overwrite``, or when its directory belongs to another clip."""
    from stylization.preprocess.runner import clip_dir_name

    records = _read_records(root)
    name = clip_dir_name(o.clip_id)
    prefix = f"clips/{name}/"
    for r in records:
        if r.id != o.clip_id and any(p.replace(os.sep, "/").startswith(prefix) for p in r.files.values()):
            raise ConfigError(f"id={o.clip_id}: its directory clips/{name} holds clip {r.id!r}; choose another id")
    taken = any(r.id == o.clip_id for r in records) or os.path.exists(os.path.join(root, "clips", name))
    if taken and not o.overwrite:
        raise ConfigError(f"clip {o.clip_id!r} is already in {root}: overwrite=true replaces it, id=... names "
                          "this one differently")
    return taken


@contextmanager
def _locked(root: str):
    """Hold an exclusive lock on the root directory (imports into one root run one at a time)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write(root: str, mat: str, audio: str, o: ImportOptions, result: dict):
    """Write the clip (staged, one rename) and the index; on failure remove what this call created."""
    from stylization.preprocess.runner import clip_dir_name, write_processed
    from stylization.preprocess.sources import RawClip

    created_root = not os.path.isdir(root)
    os.makedirs(root, exist_ok=True)
    tag = f"import-{os.getpid()}"
    clip = RawClip(id=o.clip_id, dataset=DATASET, speaker=o.speaker, emotion=o.emotion, level=o.level,
                   video=os.path.abspath(o.video) if o.video else "", audio=os.path.abspath(audio), start=None,
                   end=None)
    written, replaced = None, False
    try:
        with _locked(root):
            replaced = _existing(root, o)  # again: another import may have finished meanwhile
            records = _read_records(root)
            try:
                record = write_processed(root, clip, result, tag)
                written = os.path.join(root, "clips", clip_dir_name(o.clip_id))
                record = dataclasses.replace(record, split=o.split, texts=tuple(result["texts"]))
                _add_provenance(os.path.join(written, "record.json"), record, mat, o)
                kept = [r for r in records if r.id != record.id]
                write_index(root, kept + [record])
            finally:
                _remove_staging(root, tag)
    except BaseException:
        if created_root:  # everything in it is this call's
            shutil.rmtree(root, ignore_errors=True)
        elif written is not None and not replaced:  # a new clip the index never listed
            shutil.rmtree(written, ignore_errors=True)
        raise
    _note_split(kept + [record])
    return record, replaced


def _remove_staging(root: str, tag: str) -> None:
    """This import's directory under ``root/.partial`` and ``.partial`` itself when nothing else is in it
    (preprocessing stages its clips there too)."""
    partial = os.path.join(root, ".partial")
    shutil.rmtree(os.path.join(partial, tag), ignore_errors=True)
    try:
        os.rmdir(partial)
    except OSError:  # absent, or holding another run's clips
        pass


def _add_provenance(path: str, record: ClipRecord, mat: str, o: ImportOptions) -> None:
    """record.json (written by write_processed) with the final record (split, texts) and where the
    coefficients came from."""
    with open(path) as f:
        meta = json.load(f)
    meta.update(record.to_json())
    meta.update({"mat": os.path.abspath(mat), "mat_fps": o.fps, "face_model": o.face_model,
                 "frames_from": "video" if o.video else "stand_in"})
    write_json_atomic(path, meta)


def _note_split(records: list[ClipRecord]) -> None:
    from stylization.data.corpus import check_speaker_disjoint

    try:
        check_speaker_disjoint(records)
    except DataError as exc:
        log.warning("%s", exc)


def export_clip(clip_dir: str | os.PathLike, out: str | os.PathLike, fps: float = 30.0) -> dict:
    """``clip_dir/coeffs.npy`` (a clip of a corpus, 25 fps) -> ``out`` (.mat) at ``fps`` with every key
    StyleTalk, DreamTalk, PIRenderer and SadTalker read; ``transform_params`` carry the clip's frame
    size (its video's width, else 256). A clip with ``phonemes.npy`` also gets ``<out>_seq.json``,
    StyleTalk's phoneme file, with one index per row of the .mat. Returns a summary."""
    from stylization.data.coeffs import validate_coeffs
    from stylization.data.video import probe_video
    from stylization.preprocess.mat3dmm import resample_rows, write_3dmm

    clip_dir, out = os.fspath(clip_dir), os.fspath(out)
    if not (fps > 0 and np.isfinite(fps)):
        raise ConfigError(f"fps={fps}: the frame rate to write must be a positive number")
    if not out.endswith(".mat"):
        raise ConfigError(f"out={out}: the file to write must end in .mat")
    if not os.path.isdir(clip_dir):
        raise DataError("clip directory not found", clip_dir)
    path = os.path.join(clip_dir, "coeffs.npy")
    if not os.path.isfile(path):
        raise DataError("no coeffs.npy: not a clip directory of a corpus (clips/<id>/)", clip_dir)
    try:
        coeffs = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"not a readable .npy array ({exc})", path) from None
    validate_coeffs(coeffs, path)
    if coeffs.shape[1] != COEFF_DIM or len(coeffs) == 0:
        raise DataError(f"expected stored coefficients [T, {COEFF_DIM}] with T > 0, got {list(coeffs.shape)}", path)
    video = os.path.join(clip_dir, "video.mp4")
    frame_size = probe_video(video).width if os.path.isfile(video) else FACE_CROP_SIZE
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_3dmm(out, coeffs, fps=fps, frame_size=frame_size)
    n_out = len(resample_rows(coeffs, FPS, fps))
    summary = {"out": out, "frames": n_out, "fps": fps, "frames_25fps": len(coeffs), "frame_size": frame_size}
    phonemes = os.path.join(clip_dir, "phonemes.npy")
    if os.path.isfile(phonemes):  # StyleTalk's phoneme file beside the .mat, at the same rate and length
        from stylization.data.phonemes import resample_labels, write_official_json

        seq = out[: -len(".mat")] + "_seq.json"
        write_official_json(seq, resample_labels(np.load(phonemes, allow_pickle=False), FPS, fps, n_out))
        summary["phonemes"] = seq
    return summary
