"""``torch.utils.data`` datasets over the processed-clip format.

:class:`ClipWindowDataset` yields aligned windows of W consecutive frames. Items are
deterministic functions of (seed, epoch, index): the random offset inside a window slot,
the text and the source frame come from ``np.random.default_rng([seed, epoch, index])``,
so results do not depend on worker count or order, and a resumed run sees the same data.
"""

from __future__ import annotations

import collections
import logging
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from stylization.constants import COEFF_SLICES, LEFT_EYE, RIGHT_EYE
from stylization.data.audio import mel_windows, melspectrogram
from stylization.data.coeffs import semantic_windows
from stylization.data.corpus import ClipRecord, Corpus
from stylization.data.mfcc import speech_mfcc_windows
from stylization.data.video import read_video
from stylization.errors import DataError

log = logging.getLogger(__name__)


class LRUCache(collections.OrderedDict):
    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def get_or_make(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        if len(self) > self.capacity:
            self.popitem(last=False)
        return value


def eye_openness(landmarks: np.ndarray) -> np.ndarray:
    """[..., 68, 2] landmarks -> [...] eye aspect ratio averaged over both eyes."""

    def ear(p):
        vertical = np.linalg.norm(p[..., 1, :] - p[..., 5, :], axis=-1) + np.linalg.norm(p[..., 2, :] - p[..., 4, :], axis=-1)
        return vertical / (2 * np.linalg.norm(p[..., 0, :] - p[..., 3, :], axis=-1) + 1e-8)

    return 0.5 * (ear(landmarks[..., list(RIGHT_EYE), :]) + ear(landmarks[..., list(LEFT_EYE), :]))


def blink_values(landmarks: np.ndarray) -> np.ndarray:
    """[T, 68, 2] landmarks of a clip -> [T] blink amount in [0, 1] (0 open, 1 closed).

    The eye aspect ratio is compared with the clip's open-eye level (its 90th percentile),
    the role of SadTalker's blink ``ratio`` input.
    """
    ear = eye_openness(landmarks)
    reference = np.percentile(ear, 90) + 1e-8
    return np.clip(1.0 - ear / reference, 0.0, 1.0).astype(np.float32)


class ClipWindowDataset(Dataset):
    """Windows of ``window_frames`` consecutive frames from the clips of one split.

    Each item is a dict:

    * ``clip_id`` (str), ``speaker`` (str), ``emotion`` (str), ``start`` (int, first frame)
    * ``coeffs`` float32 [W, 260]; ``exp`` float32 [W, 64]; ``landmarks`` float32 [W, 68, 2]
    * ``blink`` float32 [W] (see :func:`blink_values`)
    * ``text`` (str): one of the clip's emotion texts ("" when it has none)
    * ``source_exp`` float32 [64]: one frame's expression from another clip of the same
      speaker, a neutral one where there is one (the identity / reference condition)
    * ``mel`` float32 [W, 1, 80, 16] when ``with_mel``
    * ``mfcc`` float32 [W, 28, 12] per-frame MFCC windows (SAAS's pose predictor's) when ``with_mfcc``
    * ``semantic`` float32 [W, 73, 27] renderer windows when ``with_semantic``
    * ``frames`` float32 [W, 3, H, W] in [-1, 1] when ``with_frames``

    Args:
        corpus: a :class:`Corpus` or its root directory.
        split: "train", "val" or "test" (the index's ``split`` field).
        window_frames: W, frames per window.
        stride_frames: distance between window slots (default W); the start is drawn
            uniformly inside its slot each epoch.
        speakers: keep only these speakers (speaker-disjoint experiments).
        seed: base seed of all sampling.
        skip_damaged: report damaged clips and leave them out instead of raising.
        frame_cache_clips / mel_cache_clips: per-worker LRU sizes for decoded clips.
    """

    def __init__(
        self,
        corpus: Corpus | str | os.PathLike,
        split: str = "train",
        window_frames: int = 32,
        stride_frames: int | None = None,
        speakers: list[str] | None = None,
        with_mel: bool = True,
        with_semantic: bool = False,
        with_frames: bool = False,
        with_mfcc: bool = False,
        seed: int = 0,
        skip_damaged: bool = False,
        frame_cache_clips: int = 4,
        mel_cache_clips: int = 1024,
    ):
        self.corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        if window_frames < 1:
            raise ValueError("window_frames must be at least 1")
        self.window_frames = window_frames
        self.stride_frames = stride_frames or window_frames
        self.with_mel, self.with_semantic, self.with_frames = with_mel, with_semantic, with_frames
        self.with_mfcc = with_mfcc
        self.seed, self.epoch = seed, 0
        self.clips = self._usable_clips(self.corpus.clips(split, speakers), skip_damaged)
        if not self.clips:
            raise DataError(f"no usable clip of at least {window_frames} frames in split {split!r}", self.corpus.root)
        self.slots: list[tuple[int, int, int]] = []  # (clip, first start, last start)
        for ci, rec in enumerate(self.clips):
            last = rec.n_frames - window_frames
            for lo in range(0, last + 1, self.stride_frames):
                self.slots.append((ci, lo, min(lo + self.stride_frames - 1, last)))
        self._source_clips = self._source_candidates()
        self._mels = LRUCache(mel_cache_clips)
        self._frames = LRUCache(frame_cache_clips)
        self._blinks = LRUCache(mel_cache_clips)
        self._mfccs = LRUCache(mel_cache_clips)

    def _usable_clips(self, clips: list[ClipRecord], skip_damaged: bool) -> list[ClipRecord]:
        short = [r.id for r in clips if r.n_frames < self.window_frames]
        if short:
            log.warning("skipping %d clips shorter than %d frames: %s", len(short), self.window_frames,
                        ", ".join(short[:20]) + (" ..." if len(short) > 20 else ""))
        clips = [r for r in clips if r.n_frames >= self.window_frames]
        problems = {r.id: p for r in clips if (p := self.corpus.check_clip(r)) is not None}
        if problems:
            lines = "; ".join(f"{cid}: {p}" for cid, p in list(problems.items())[:10])
            if not skip_damaged:
                raise DataError(f"{len(problems)} damaged clips ({lines}); fix them or set skip_damaged", self.corpus.root)
            log.warning("skipping %d damaged clips: %s", len(problems), lines)
        return [r for r in clips if r.id not in problems]

    def _source_candidates(self) -> dict[str, list[int]]:
        """Per speaker: indices of its neutral clips, or of all its clips when it has none."""
        by_speaker: dict[str, list[int]] = {}
        for ci, rec in enumerate(self.clips):
            by_speaker.setdefault(rec.speaker, []).append(ci)
        return {spk: [c for c in idx if self.clips[c].emotion == "neutral"] or idx for spk, idx in by_speaker.items()}

    def set_epoch(self, epoch: int) -> None:
        """Called by the training engine before each epoch's iterator is built."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.slots)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _mel(self, ci: int) -> np.ndarray:
        return self._mels.get_or_make(ci, lambda: melspectrogram(self.corpus.load_audio(self.clips[ci])))

    def _mfcc(self, ci: int) -> np.ndarray:
        """The clip's per-frame MFCC windows [n_frames, 28, 12] (:func:`speech_mfcc_windows`; 25 fps)."""
        rec = self.clips[ci]
        return self._mfccs.get_or_make(ci, lambda: speech_mfcc_windows(self.corpus.load_audio(rec), rec.n_frames))

    def _clip_frames(self, ci: int) -> np.ndarray:
        rec = self.clips[ci]

        def load():
            frames = read_video(self.corpus.path(rec, "video"), fps=rec.fps)
            if len(frames) < rec.n_frames:
                raise DataError(f"video has {len(frames)} frames, index says {rec.n_frames}", self.corpus.path(rec, "video"))
            return frames

        return self._frames.get_or_make(ci, load)

    def __getitem__(self, index: int) -> dict:
        ci, lo, hi = self.slots[index]
        rec = self.clips[ci]
        rng = self.rng(index)
        start = int(rng.integers(lo, hi + 1))
        stop = start + self.window_frames
        coeffs_all = np.load(self.corpus.path(rec, "coeffs"), mmap_mode="r")
        coeffs = np.array(coeffs_all[start:stop], dtype=np.float32)
        landmarks_all = np.load(self.corpus.path(rec, "landmarks"), mmap_mode="r")
        blink = self._blinks.get_or_make(ci, lambda: blink_values(np.asarray(landmarks_all, np.float32)))
        candidates = [c for c in self._source_clips[rec.speaker] if c != ci] or [ci]
        src = self.clips[candidates[int(rng.integers(len(candidates)))]]
        src_coeffs = np.load(self.corpus.path(src, "coeffs"), mmap_mode="r")
        src_exp = np.array(src_coeffs[int(rng.integers(src.n_frames)), COEFF_SLICES["exp"]], dtype=np.float32)
        item = {
            "clip_id": rec.id,
            "speaker": rec.speaker,
            "emotion": rec.emotion,
            "start": start,
            "coeffs": torch.from_numpy(coeffs),
            "exp": torch.from_numpy(coeffs[:, COEFF_SLICES["exp"]].copy()),
            "landmarks": torch.from_numpy(np.array(landmarks_all[start:stop], dtype=np.float32)),
            "blink": torch.from_numpy(blink[start:stop].copy()),
            "text": rec.texts[int(rng.integers(len(rec.texts)))] if rec.texts else "",
            "source_exp": torch.from_numpy(src_exp),
        }
        if self.with_mel:
            item["mel"] = torch.from_numpy(mel_windows(self._mel(ci), np.arange(start, stop), rec.fps))
        if self.with_mfcc:
            item["mfcc"] = torch.from_numpy(self._mfcc(ci)[start:stop].copy())
        if self.with_semantic:
            centers = np.arange(start, stop)
            item["semantic"] = torch.from_numpy(semantic_windows(np.asarray(coeffs_all, np.float32), centers))
        if self.with_frames:
            frames = self._clip_frames(ci)[start:stop]
            item["frames"] = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        return item
