"""Raw MEAD / HDTF / a folder of videos -> a corpus root in the processed-clip format.

``scripts/preprocess.py`` is the command; this module is the work:

* :class:`ClipProcessor` — one raw clip (:class:`~stylization.preprocess.sources.RawClip`) ->
  the corpus's files: decode (25 fps, 16 kHz mono), track the face on a downscaled copy, one
  FOMM-style crop square for the clip, 256² frames, 68 landmarks per frame on the crops,
  3DMM coefficients (Deep3DFaceRecon when its files are given, else the batched landmark fit of
  the whole clip). A clip that cannot be used raises :class:`SkipClip` with the reason.
* :func:`preprocess` — every clip of a dataset (or of one shard of it), in parallel workers,
  resumable: each clip is written into a private directory and moved into ``clips/`` in one
  rename, with its ``record.json`` as the sign that it is complete; a failure leaves a marker in
  ``failures/`` instead. A rerun skips both (``retry_failed=True`` retries the failures).
* :func:`merge` — the index: every finished clip's record, its split (speaker-disjoint) and its
  emotion texts, into ``index.jsonl``; the failure markers into ``failures.jsonl``. Run at the end
  of every :func:`preprocess` and on its own once the shards of a cluster job are done.

Layout of ``out`` (besides what the corpus format names)::

    clips/<dir>/record.json     the clip's index line before the split and texts (written last)
    failures/<dir>.json         {"id", "reason", "video"} of a clip that was skipped
    .partial/                   clips being written (removed when a run of the same shard starts)

``<dir>`` is the clip id with ``#`` replaced by ``_`` (MEAD ids are ``M003#angry#level_1#001``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from stylization.constants import FACE_CROP_SIZE, FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, WINDOW_FRAMES
from stylization.data.corpus import INDEX_NAME, ClipRecord, write_clip, write_json_atomic, write_text_atomic
from stylization.errors import ConfigError, DataError, UserError
from stylization.preprocess.sources import RawClip
from stylization.preprocess.tracking import SkipClip, clip_box, crop_frame, crop_matrix, track_face, transform_points

log = logging.getLogger(__name__)

FAILURES_NAME = "failures.jsonl"
MEAD_TEST_SPEAKERS = ("M003", "M030", "W009", "W015")  # EDTalk's published MEAD test speakers


def clip_dir_name(clip_id: str) -> str:
    """The directory (and failure-marker) name of a clip id."""
    return clip_id.replace("#", "_").replace("/", "_")


@dataclasses.dataclass(frozen=True)
class ProcessOptions:
    """What :class:`ClipProcessor` does to each clip (``configs/preprocess.yaml`` documents each)."""

    size: int = FACE_CROP_SIZE
    detector: str = "dlib"
    detect_side: int = 640
    detect_every: int = 5
    max_lost: int = 5
    smooth: int = 5
    coeffs_backend: str = "fit"  # fit | deep3d
    face_model: str = "stand_in"
    deep3d_recon: str | None = None
    bfm_folder: str | None = None
    deep3d_batch: int = 32  # frames per ReconNet call
    device: str = "cpu"
    phonemes: bool = True  # phonemes.npy per clip: pocketsphinx's phone recognition (StyleTalk's content input)


class ClipProcessor:
    """Holds the detector and the coefficient backend of one worker; :meth:`__call__` processes a clip."""

    def __init__(self, options: ProcessOptions):
        from stylization.data.face_model import build_face_model
        from stylization.preprocess.faces import LandmarkDetector

        self.options = options
        self.seconds: Counter = Counter()  # time spent per step (track, crop_landmarks, coefficients), summed
        self.detector = LandmarkDetector(options.detector, device=options.device)
        self.face_model = build_face_model(options.face_model)
        self.deep3d = None
        if options.coeffs_backend == "deep3d":
            from stylization.preprocess.deep3d import Deep3DBackend

            self.deep3d = Deep3DBackend(str(options.deep3d_recon), str(options.bfm_folder), options.device,
                                        batch_size=int(options.deep3d_batch))
        elif options.coeffs_backend != "fit":
            raise ConfigError(f"coeffs_backend must be fit or deep3d, got {options.coeffs_backend!r}")
        self.phonemes = None
        if options.phonemes:
            from stylization.data.phonemes import PhonemeRecognizer

            self.phonemes = PhonemeRecognizer()

    def __call__(self, clip: RawClip) -> dict:
        """-> the clip's arrays: ``frames`` uint8 [T, S, S, 3], ``landmarks`` float32 [T, 68, 2] (px of
        the crop), ``coeffs`` float32 [T, 260], ``audio`` float32 [T·640] 16 kHz, ``box`` (cx, cy, side)
        of the crop in source pixels, and with ``options.phonemes`` ``phonemes`` int64 [T]. Raises
        :class:`SkipClip` with the reason."""
        from stylization.data.audio import fit_to_frames
        from stylization.data.video import probe_video
        from stylization.preprocess.decode import decode_audio, iter_frames

        o = self.options
        clock = time.perf_counter()
        try:
            info = probe_video(clip.video)
            audio = decode_audio(clip.audio or clip.video, clip.start, clip.end)
            longest = max(info.width, info.height)
            factor = longest / o.detect_side if longest > o.detect_side else 1.0
            small = iter_frames(clip.video, FPS, clip.start, clip.end, max_side=o.detect_side)
            upsample = 1 if longest / factor < 480 else 0  # small frames: faces may be under dlib's 80 px
            track = track_face(small, self.detector, o.detect_every, o.max_lost, o.smooth, upsample).scaled(factor)
        except DataError as exc:
            raise SkipClip(str(exc)) from None
        n = len(track.detected)
        if n < WINDOW_FRAMES:
            raise SkipClip(f"{n} frames at {FPS} fps, shorter than the {WINDOW_FRAMES}-frame window")
        audio_frames = len(audio) / SAMPLES_PER_FRAME
        if audio_frames < n - 1:
            raise SkipClip(f"audio shorter than the video ({len(audio) / SAMPLE_RATE:.2f} s for {n / FPS:.2f} s)")
        box = clip_box(track.squares)
        matrix = crop_matrix(box, o.size)
        clock = self._lap("track", clock)
        frames, landmarks = [], []
        try:
            for t, frame in enumerate(iter_frames(clip.video, FPS, clip.start, clip.end)):
                if t >= n:
                    break
                crop = crop_frame(frame, box, o.size)
                rect = transform_points(track.rects[t].reshape(2, 2), matrix).reshape(4)
                frames.append(crop)
                landmarks.append(self.detector.landmarks_in(crop, rect))
        except DataError as exc:
            raise SkipClip(str(exc)) from None
        if len(frames) != n:
            raise SkipClip(f"the second decoding gave {len(frames)} frames, the first {n}")
        frames_arr, lm = np.stack(frames), np.stack(landmarks).astype(np.float32)
        clock = self._lap("crop_landmarks", clock)
        coeffs = self.coefficients(frames_arr, lm)
        clock = self._lap("coefficients", clock)
        audio = fit_to_frames(audio, n)
        result = {"frames": frames_arr, "landmarks": lm, "coeffs": coeffs, "audio": audio, "box": box}
        if self.phonemes is not None:  # no transcript in MEAD's or HDTF's trees: recognised, not aligned
            result["phonemes"] = self.phonemes.recognize(audio, n)
            self._lap("phonemes", clock)
        return result

    def _lap(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[step] += now - since
        return now

    def coefficients(self, frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """[T, S, S, 3] crops + [T, 68, 2] landmarks -> [T, 260] coefficients."""
        if self.deep3d is not None:
            return self.deep3d.coefficients(frames, landmarks)  # batched over the clip's frames
        from stylization.preprocess.clip_fit import fit_clip

        return fit_clip(self.face_model, landmarks, frames.shape[1])


def _subject(dataset: str, speaker: str) -> str:
    """Who speaks, for the emotion texts: MEAD ids say the gender (M…: actor, W…: actress)."""
    if dataset == "mead" and speaker[:1] in "MW":
        return "A man" if speaker[0] == "M" else "A woman"
    return "A person"


def write_processed(out: str, clip: RawClip, result: dict, partial_tag: str) -> ClipRecord:
    """Write one processed clip atomically: into ``out/.partial/<tag>/``, then one rename into
    ``out/clips/<dir>`` (an older copy, from a retried failure, is replaced)."""
    name = clip_dir_name(clip.id)
    staging = os.path.join(out, ".partial", partial_tag)
    shutil.rmtree(staging, ignore_errors=True)
    record = write_clip(staging, name, clip.speaker, clip.emotion, clip.level, "train", [], result["coeffs"],
                        result["landmarks"], result["audio"], result["frames"])
    if "phonemes" in result:
        np.save(os.path.join(staging, "clips", name, "phonemes.npy"), result["phonemes"])
        record.files["phonemes"] = f"clips/{name}/phonemes.npy"
    record = dataclasses.replace(record, id=clip.id)
    meta = {**record.to_json(), "dataset": clip.dataset, "source": clip.to_json(),
            "crop_box": [round(float(v), 2) for v in result["box"]]}
    src = os.path.join(staging, "clips", name)
    with open(os.path.join(src, "record.json"), "w") as f:
        json.dump(meta, f)
    dst = os.path.join(out, "clips", name)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst):
        shutil.rmtree(dst)
    os.replace(src, dst)
    shutil.rmtree(staging, ignore_errors=True)
    return record


def _state(out: str, clip: RawClip) -> str:
    """done | failed | todo."""
    name = clip_dir_name(clip.id)
    if os.path.isfile(os.path.join(out, "clips", name, "record.json")):
        return "done"
    if os.path.isfile(os.path.join(out, "failures", name + ".json")):
        return "failed"
    return "todo"


_WORKER: ClipProcessor | None = None


def _init_worker(options: ProcessOptions) -> None:
    global _WORKER
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _WORKER = ClipProcessor(options)


def _work(args: tuple[RawClip, str, str]) -> tuple[str, str | None, str | None, int, float]:
    """One clip in a worker -> (id, failure reason or None, its kind (the reason without file path or
    details, for the summary), frames, seconds)."""
    clip, out, tag = args
    started = time.monotonic()
    try:
        result = _WORKER(clip)
        write_processed(out, clip, result, tag)
        return clip.id, None, None, len(result["frames"]), time.monotonic() - started
    except (SkipClip, UserError) as exc:
        reason, kind = str(exc), getattr(exc, "message", str(exc))
    except Exception as exc:  # a bug or a library error on one clip: logged with its type, the run goes on
        log.exception("clip %s failed", clip.id)
        reason = kind = f"internal error ({type(exc).__name__}: {exc})"
    write_json_atomic(os.path.join(out, "failures", clip_dir_name(clip.id) + ".json"),
                       {"id": clip.id, "reason": reason, "video": clip.video})
    return clip.id, reason, kind.split(" (")[0], 0, time.monotonic() - started


def preprocess(clips: Sequence[RawClip], out: str, options: ProcessOptions, workers: int = 1,
               retry_failed: bool = False, shard_tag: str = "0of1") -> dict:
    """Process every clip not yet done (or failed, unless ``retry_failed``); returns this run's counts:
    ``processed``, ``failed_now``, ``skipped_done``, ``skipped_failed``, ``frames_now``, ``reasons``."""
    from tqdm import tqdm

    os.makedirs(os.path.join(out, "failures"), exist_ok=True)
    for stale in _partial_dirs(out, shard_tag):
        shutil.rmtree(stale, ignore_errors=True)
    states = Counter()
    todo = []
    for clip in clips:
        state = _state(out, clip)
        if state == "done" or (state == "failed" and not retry_failed):
            states[state] += 1
            continue
        if state == "failed":
            os.remove(os.path.join(out, "failures", clip_dir_name(clip.id) + ".json"))
        todo.append(clip)
    if states:
        log.info("skipping %d finished and %d failed clips (retry_failed=true retries the failures)",
                 states["done"], states["failed"])
    jobs = [(clip, out, f"{shard_tag}-{i}") for i, clip in enumerate(todo)]
    reasons: Counter = Counter()
    frames, processed, seconds = 0, 0, 0.0
    if workers <= 1:
        _init_worker(options)
        results: Iterable = map(_work, jobs)
        pool = None
    else:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (options,))
        results = pool.imap_unordered(_work, jobs)
    try:
        for clip_id, reason, kind, n, secs in tqdm(results, total=len(jobs), desc="preprocess", unit="clip"):
            seconds += secs
            if reason is None:
                processed, frames = processed + 1, frames + n
            else:
                reasons[kind] += 1
                log.warning("skipped %s: %s", clip_id, reason)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return {"processed": processed, "failed_now": sum(reasons.values()), "skipped_done": states["done"],
            "skipped_failed": states["failed"], "frames_now": frames, "reasons": dict(reasons),
            "seconds_per_clip": round(seconds / max(len(jobs), 1), 3)}


def _partial_dirs(out: str, shard_tag: str) -> list[str]:
    root = os.path.join(out, ".partial")
    if not os.path.isdir(root):
        return []
    return [os.path.join(root, d) for d in os.listdir(root) if d.startswith(shard_tag + "-")]


# ---- the index -------------------------------------------------------------------------------


def read_splits_file(path: str) -> set[str]:
    """Test clip ids from a JSON list or a text file (one id per line; blank lines ignored)."""
    if not os.path.isfile(path):
        raise DataError("splits file not found", path)
    text = open(path, encoding="utf-8-sig").read()
    if path.endswith(".json"):
        try:
            ids = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"not a JSON list of clip ids ({exc})", path) from None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DataError("not a JSON list of clip ids", path)
        return {i.strip() for i in ids}
    return {line.strip() for line in text.splitlines() if line.strip()}


def default_test_speakers(dataset: str, speakers: Sequence[str]) -> list[str]:
    """MEAD: EDTalk's four test speakers that are present. HDTF and folders: the speakers (videos)
    whose id hashes into the last tenth (md5), at least one when there are two speakers or more."""
    if dataset == "mead":
        return [s for s in MEAD_TEST_SPEAKERS if s in speakers]
    bucket = {s: int(hashlib.md5(s.encode()).hexdigest(), 16) % 1000 for s in speakers}
    test = [s for s in speakers if bucket[s] >= 900]
    if not test and len(speakers) > 1:
        test = [max(speakers, key=lambda s: bucket[s])]
    return test


def merge(out: str, dataset: str, splits: str | None = None, texts_per_clip: int = 5, seed: int = 0,
          ranker=None, paraphraser=None) -> dict:
    """Write ``out/index.jsonl`` (every finished clip, split and texts set) and ``out/failures.jsonl``;
    returns ``clips``, ``failed``, ``frames``, ``hours``, ``splits``. ``ranker``: a
    :class:`~stylization.preprocess.texts.ClipRanker` that picks the texts among more candidates;
    ``paraphraser``: a :class:`~stylization.preprocess.paraphrase.Paraphraser` whose rewordings join
    those candidates (used only with a ranker)."""
    records = _finished_records(out)
    speakers = sorted({r["speaker"] for r in records})
    if splits:
        test_ids = read_splits_file(splits)
        split_of = {r["id"]: "test" if r["id"] in test_ids else "train" for r in records}
    else:
        test_speakers = set(default_test_speakers(dataset, speakers))
        split_of = {r["id"]: "test" if r["speaker"] in test_speakers else "train" for r in records}
    texts = emotion_texts(out, records, texts_per_clip, seed, ranker, paraphraser)
    lines = []
    for r in records:
        rec = ClipRecord.from_json({**{k: r[k] for k in ("id", "speaker", "emotion", "level", "n_frames", "fps",
                                                          "files")},
                                    "split": split_of[r["id"]], "texts": texts[r["id"]]}, r["id"])
        lines.append(json.dumps(rec.to_json()))
    write_text_atomic(os.path.join(out, INDEX_NAME), "".join(line + "\n" for line in lines))
    failures = _failures(out)
    write_text_atomic(os.path.join(out, FAILURES_NAME), "".join(json.dumps(f) + "\n" for f in failures))
    counts = Counter(split_of.values())
    return {"clips": len(records), "failed": len(failures), "frames": sum(r["n_frames"] for r in records),
            "hours": round(sum(r["n_frames"] for r in records) / FPS / 3600, 4), "splits": dict(counts)}


def _finished_records(out: str) -> list[dict]:
    root = os.path.join(out, "clips")
    records = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name, "record.json")
        if os.path.isfile(path):
            with open(path) as f:
                r = json.load(f)
            records.append(r)
    return sorted(records, key=lambda r: r["id"])


def _failures(out: str) -> list[dict]:
    root = os.path.join(out, "failures")
    found = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if name.endswith(".json"):
            with open(os.path.join(root, name)) as f:
                found.append(json.load(f))
    return sorted(found, key=lambda f: f["id"])


def emotion_texts(out: str, records: list[dict], n: int, seed: int, ranker=None,
                  paraphraser=None) -> dict[str, list[str]]:
    """Texts per clip id: geometric AU estimates (the speaker's neutral clips as the reference where
    there are any) -> :func:`stylization.text.emotion_text.describe_aus`, with the clip's emotion
    label when it has one (MEAD) and the one the AUs suggest otherwise; with a ``ranker``, the ``n``
    of ``4n`` candidates CLIP finds closest to four frames of the clip (the paper's ranking). With a
    ``paraphraser`` too, the candidates' rewordings (each distinct sentence of the corpus reworded
    once, under ``seed``) are candidates beside them."""
    from stylization.data.video import read_video
    from stylization.preprocess.aus import geometric_aus, reference_features
    from stylization.preprocess.texts import sample_frames
    from stylization.text.emotion_text import describe_aus

    load = lambda r, kind: np.load(os.path.join(out, r["files"][kind]))  # noqa: E731
    by_speaker: dict[str, list[dict]] = {}
    for r in records:
        by_speaker.setdefault(r["speaker"], []).append(r)
    texts, candidates = {}, {}
    for speaker, recs in by_speaker.items():
        neutral = [r for r in recs if r["emotion"] == "neutral"]
        reference = None if not neutral else reference_features(
            np.concatenate([load(r, "landmarks") for r in neutral]), np.concatenate([load(r, "coeffs") for r in neutral]))
        for r in recs:
            aus = geometric_aus(load(r, "landmarks"), load(r, "coeffs"), neutral=reference)
            emotion = r["emotion"] if r["emotion"] not in ("unlabelled", "") else None
            rng = np.random.default_rng([seed, int(hashlib.md5(r["id"].encode()).hexdigest()[:8], 16)])
            subject = _subject(r.get("dataset", ""), speaker)
            if ranker is None:
                texts[r["id"]] = describe_aus(aus, emotion, subject, n, rng)
                continue
            candidates[r["id"]] = describe_aus(aus, emotion, subject, 4 * n, rng)
    if paraphraser is not None and candidates:
        unique = sorted({s for c in candidates.values() for s in c})
        rewordings = dict(zip(unique, paraphraser(unique, seed)))
        candidates = {i: list(dict.fromkeys(c + [p for s in c for p in rewordings[s]])) for i, c in candidates.items()}
    for r in records:
        if r["id"] in candidates:
            frames = sample_frames(read_video(os.path.join(out, r["files"]["video"])))
            texts[r["id"]] = ranker.rank(frames, candidates[r["id"]], n)
    return texts


def text_ranker(model: str | None, pretrained: str | None, device: str = "cpu"):
    """The CLIP ranker of the emotion texts, or None: ``model`` None (no ranking), an open_clip name
    (``ViT-B-32``), or ``tiny`` (a random tiny tower, for tests). Weights that cannot be loaded
    (offline, no cached file) give a warning and no ranking, never a failed run."""
    if model is None:
        return None
    from stylization.errors import CheckpointError
    from stylization.loading import open_clip_model
    from stylization.preprocess.texts import ClipRanker
    from stylization.style_e.text_encoder import tiny_clip_config

    try:
        spec = tiny_clip_config() if model == "tiny" else model
        clip, tokenizer = open_clip_model(spec, None if model == "tiny" else pretrained, key="clip")
    except CheckpointError as exc:
        log.warning("emotion texts are not CLIP-ranked: %s", exc)
        return None
    return ClipRanker(clip, tokenizer, device)
