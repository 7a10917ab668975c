"""Building the synthetic MEAD-like corpus in the processed-clip format.

Every clip is a pure function of (seed, speaker, emotion, level, clip number), so the
corpus is the same whatever the number of workers. Splits: the last ``test_speakers``
speakers form the test split and speak only the sentence bank's test sentences, so test
clips share neither a speaker nor a sentence with training.

Layout written under ``out`` (besides the standard per-clip files, see data/README.md)::

    clips/<id>/style_<name>.mp4   the clip in each art style, silent (files["style_<name>"])
    clips/<id>/sentence.txt       the spoken sentence
    art/<style>/ref_<k>.png       art reference pictures: other faces in that style
    art/index.json                {style: [reference paths]}
    speakers.json                 the procedural identities (colours, voice)
    preview.png, preview.mp4      a contact sheet and a side-by-side video
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import tempfile

import numpy as np
import torch

from stylization.constants import COEFF_DIM, COEFF_SLICES, EXP_DIM, FACE_CROP_SIZE, FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from stylization.data.audio import fit_to_frames
from stylization.data.corpus import ClipRecord, MEAD_EMOTIONS, write_clip, write_index
from stylization.data.face_model import EXPRESSION_COMPONENTS, stand_in_face_model
from stylization.data.synthetic.art import ART_STYLES, stylize
from stylization.data.synthetic.motion import FRAMING, clip_coefficients
from stylization.data.synthetic.profiles import (EMOTIONS, LEVEL_SCALE, LEVELS, Speaker, au_intensities,
                                                 expression_offset, make_speaker)
from stylization.data.synthetic.render import render_face
from stylization.data.synthetic.sentences import split_bank
from stylization.data.synthetic.speech import espeak_path, synthesize
from stylization.data.video import read_video, write_video
from stylization.errors import ConfigError, DataError
from stylization.text.emotion_text import describe_aus

log = logging.getLogger(__name__)
THUMB = 96  # preview thumbnail size in pixels


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """What to build; see configs/corpus.yaml for the meaning of each field."""

    out: str
    speakers: int = 8
    clips: int = 2
    seconds: float = 3.0
    resolution: int = FACE_CROP_SIZE
    seed: int = 0
    workers: int = 2
    test_speakers: int | None = None
    emotions: tuple[str, ...] = MEAD_EMOTIONS
    levels: tuple[int, ...] = LEVELS
    styles: tuple[str, ...] = ART_STYLES
    texts_per_clip: int = 5
    phonemes: bool = True  # phonemes.npy per clip: the sentence force-aligned to the sound (pocketsphinx)
    art_references: int = 3
    video_crf: int = 20
    motion_styles: float = 1.0  # how much the speakers' motion habits differ (0: all move alike)
    overwrite: bool = False

    def validate(self) -> None:
        if self.speakers < 1 or self.clips < 1:
            raise ConfigError("speakers and clips must be at least 1")
        if self.resolution < 32 or self.resolution % 2:
            raise ConfigError(f"resolution must be an even number >= 32, got {self.resolution}")
        if not 0.5 <= self.seconds <= 30:
            raise ConfigError(f"seconds must be in [0.5, 30], got {self.seconds}")
        for name, given, allowed in (("emotions", self.emotions, MEAD_EMOTIONS), ("levels", self.levels, LEVELS),
                                     ("styles", self.styles, ART_STYLES)):
            bad = [v for v in given if v not in allowed]
            if bad or not given:
                raise ConfigError(f"{name}={list(given)}: {bad or 'empty'}; allowed: {list(allowed)}")
        if not 0.0 <= self.motion_styles <= 2.0:
            raise ConfigError(f"motion_styles must be in [0, 2], got {self.motion_styles}")
        if self.n_test_speakers >= self.speakers and self.speakers > 1:
            raise ConfigError(f"test_speakers={self.test_speakers} leaves no training speaker")

    @property
    def n_test_speakers(self) -> int:
        if self.test_speakers is not None:
            return int(self.test_speakers)
        return 0 if self.speakers < 2 else max(1, round(self.speakers / 4))


@dataclasses.dataclass(frozen=True)
class ClipJob:
    speaker_index: int
    emotion: str
    level: int
    number: int
    split: str

    @property
    def clip_id(self) -> str:
        return f"S{self.speaker_index:03d}_{self.emotion}_{self.level}_{self.number:03d}"


def plan_clips(spec: CorpusSpec) -> list[ClipJob]:
    first_test = spec.speakers - spec.n_test_speakers
    return [ClipJob(s, e, lvl, k, "test" if s >= first_test else "train")
            for s in range(spec.speakers) for e in spec.emotions for lvl in spec.levels for k in range(spec.clips)]


_FACE_MODEL = None
_PHONEMES = None  # one pocketsphinx aligner per worker process


def _face_model():
    global _FACE_MODEL
    if _FACE_MODEL is None:
        _FACE_MODEL = stand_in_face_model()
    return _FACE_MODEL


def clip_speech(job: ClipJob, speaker: Speaker, spec: CorpusSpec, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """(sentence, 16 kHz audio with leading and trailing silence) of one clip."""
    train_sentences, test_sentences = split_bank()
    bank = test_sentences if job.split == "test" else train_sentences
    sentence = bank[int(rng.integers(len(bank)))]
    profile = EMOTIONS[job.emotion]
    s = LEVEL_SCALE[job.level] if job.emotion != "neutral" else 0.0
    speech = synthesize(sentence, speaker.voice, round(speaker.pitch + profile.pitch_shift * s),
                        round(speaker.words_per_minute * (1 + (profile.speed_factor - 1) * s)),
                        round(100 + (profile.amplitude - 100) * s))
    lead = np.zeros(int(rng.uniform(0.25, 0.45) * SAMPLE_RATE), np.float32)
    wav = np.concatenate([lead, speech])
    n_frames = max(int(round(spec.seconds * FPS)), -(-wav.size // SAMPLES_PER_FRAME) + 8)
    return sentence, fit_to_frames(wav, n_frames)


def build_clip(job: ClipJob, spec: CorpusSpec, root: str) -> tuple[ClipRecord, dict[str, np.ndarray]]:
    """Write one clip; returns its record and preview thumbnails (plain and per style)."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    emotion_index = MEAD_EMOTIONS.index(job.emotion)
    rng = np.random.default_rng([spec.seed, job.speaker_index, emotion_index, job.level, job.number])
    speaker = make_speaker(job.speaker_index, spec.seed, motion_styles=spec.motion_styles)
    sentence, wav = clip_speech(job, speaker, spec, rng)
    n_frames = wav.size // SAMPLES_PER_FRAME
    coeffs = clip_coefficients(speaker, job.emotion, job.level, wav, n_frames, spec.resolution, rng)
    landmarks = _face_model().landmarks_from_coeffs(torch.from_numpy(coeffs), spec.resolution).numpy()
    frames = np.stack([render_face(p, speaker, spec.resolution) for p in landmarks])
    mean_named = coeffs[:, COEFF_SLICES["exp"]][:, : len(EXPRESSION_COMPONENTS)].mean(0)
    aus = au_intensities(np.concatenate([mean_named, np.zeros(EXP_DIM - len(mean_named))]))
    texts = describe_aus(aus, job.emotion, speaker.subject, spec.texts_per_clip, rng)
    rel = f"clips/{job.clip_id}"
    os.makedirs(os.path.join(root, rel), exist_ok=True)
    middle = n_frames // 2
    thumbs = {"plain": cv2.resize(frames[middle], (THUMB, THUMB), interpolation=cv2.INTER_AREA)}
    extra = {}
    for style in spec.styles:
        styled = np.stack([stylize(f, style) for f in frames])
        # Styled videos carry no sound (the clip's audio.wav and video.mp4 do): AAC is a tenth of the cost.
        write_video(os.path.join(root, rel, f"style_{style}.mp4"), styled, crf=spec.video_crf)
        extra[f"style_{style}"] = f"{rel}/style_{style}.mp4"
        thumbs[style] = cv2.resize(styled[middle], (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    if spec.phonemes:  # the known sentence aligned to the clip's own sound: StyleTalk's content input
        global _PHONEMES
        if _PHONEMES is None:
            from stylization.data.phonemes import PhonemeRecognizer

            _PHONEMES = PhonemeRecognizer()
        try:
            labels = _PHONEMES.align(wav, sentence, n_frames, speaker.voice)
        except DataError as exc:  # pocketsphinx finds no alignment for ~1 clip in 15: that clip has no phonemes file
            log.warning("clip %s: no phonemes (%s)", job.clip_id, exc)
        else:
            np.save(os.path.join(root, rel, "phonemes.npy"), labels)
            extra["phonemes"] = f"{rel}/phonemes.npy"
    record = write_clip(root, job.clip_id, speaker.name, job.emotion, job.level, job.split, texts, coeffs, landmarks,
                        wav, frames, extra_files=extra)
    with open(os.path.join(root, rel, "sentence.txt"), "w") as f:
        f.write(sentence + "\n")
    return record, thumbs


def _build_clip_star(args):
    return build_clip(*args)


def build_art_references(spec: CorpusSpec, root: str) -> dict[str, list[str]]:
    """Reference pictures per style: faces of people outside the corpus, as a user would supply."""
    from PIL import Image

    fm = _face_model()
    refs: dict[str, list[str]] = {s: [] for s in spec.styles}
    for k in range(spec.art_references):
        rng = np.random.default_rng([spec.seed, 424242, k])
        person = make_speaker(k, spec.seed + 1_000_003, prefix="R")
        coeffs = np.zeros(COEFF_DIM, np.float32)
        coeffs[COEFF_SLICES["id"]] = person.identity
        emotion = MEAD_EMOTIONS[int(rng.integers(len(MEAD_EMOTIONS)))]
        if emotion != "neutral":
            coeffs[COEFF_SLICES["exp"]] = expression_offset(emotion, 2)
        coeffs[COEFF_SLICES["exp"].start] += rng.uniform(0.0, 0.4)  # mouth a little open (exp 0: jaw_open)
        coeffs[COEFF_SLICES["angle"]] = rng.normal(0, 0.08, 3)
        coeffs[COEFF_SLICES["trans"]] = FRAMING
        lm = fm.landmarks_from_coeffs(torch.from_numpy(coeffs), spec.resolution).numpy()
        face = render_face(lm, person, spec.resolution)
        for style in spec.styles:
            rel = f"art/{style}/ref_{k}.png"
            os.makedirs(os.path.join(root, "art", style), exist_ok=True)
            Image.fromarray(stylize(face, style)).save(os.path.join(root, rel))
            refs[style].append(rel)
    with open(os.path.join(root, "art", "index.json"), "w") as f:
        json.dump(refs, f, indent=1)
    return refs


def write_previews(spec: CorpusSpec, root: str, records: list[ClipRecord], thumbs: list[dict]) -> None:
    """preview.png: one row per emotion (strongest level, speakers taking turns), the plain frame
    then each style; preview.mp4: the first clip beside its first two styles, with sound."""
    from PIL import Image

    speakers = sorted({r.speaker for r in records})
    rows = []
    for i, emotion in enumerate(spec.emotions):
        wanted = speakers[i % len(speakers)]
        for rec, th in zip(records, thumbs):
            if rec.emotion == emotion and rec.speaker == wanted and rec.level == max(spec.levels):
                rows.append(np.concatenate([th["plain"]] + [th[s] for s in spec.styles], 1))
                break
    Image.fromarray(np.concatenate(rows, 0)).save(os.path.join(root, "preview.png"))
    rec = records[0]
    videos = [read_video(os.path.join(root, rec.files["video"]))]
    videos += [read_video(os.path.join(root, rec.files[f"style_{s}"])) for s in spec.styles[:2]]
    n = min(len(v) for v in videos)
    from stylization.data.audio import load_audio

    write_video(os.path.join(root, "preview.mp4"), np.concatenate([v[:n] for v in videos], 2),
                audio=load_audio(os.path.join(root, rec.files["audio"])), crf=spec.video_crf)


def build_corpus(spec: CorpusSpec) -> list[ClipRecord]:
    """Build the corpus into ``spec.out`` (written aside, then moved into place when complete)."""
    from tqdm import tqdm

    spec.validate()
    espeak_path()  # fail before any work when espeak-ng is missing
    out = os.path.abspath(spec.out)
    if os.path.exists(out) and os.listdir(out) and not spec.overwrite:
        raise ConfigError(f"out={spec.out} exists and is not empty; choose another folder or pass overwrite=true")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}-building-", dir=parent)
    try:
        jobs = plan_clips(spec)
        args = [(job, spec, work) for job in jobs]
        if spec.workers > 1:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(spec.workers) as pool:
                results = list(tqdm(pool.imap(_build_clip_star, args), total=len(jobs), desc="clips"))
        else:
            results = [build_clip(*a) for a in tqdm(args, desc="clips")]
        records = [r for r, _ in results]
        write_index(work, records)
        speakers = [dataclasses.asdict(make_speaker(i, spec.seed, motion_styles=spec.motion_styles))
                    for i in range(spec.speakers)]
        for s in speakers:
            s["identity"] = [round(float(v), 6) for v in s["identity"]]
        with open(os.path.join(work, "speakers.json"), "w") as f:
            json.dump(speakers, f, indent=1)
        build_art_references(spec, work)
        write_previews(spec, work, records, [t for _, t in results])
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("wrote %d clips to %s", len(records), out)
    return records
