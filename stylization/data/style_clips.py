"""Training items for the style encoders (StyleTalk, SAAS): a target window (with its phonemes for
StyleTalk), and style clips around it.

A *style* is a (speaker, emotion) pair, MEAD's unit of speaking style. Each item of
:class:`StyleClipDataset` is L consecutive frames of one clip (the target, reconstructed in the
self-driven setting) and three style clips, each a random crop of at most S frames of a whole clip,
zero-padded to S with a mask:

* ``style`` — another clip of the target's style (the target's own clip when its style has one
  clip only): the decoder is driven by its code;
* ``positive`` — a further clip of that style (the triplet's positive);
* ``negative`` — a clip of another style; with probability ``hard_negative`` one of the same
  speaker (another emotion: the code must carry the emotion, not only the person), otherwise of
  any other style.

Keys: ``clip_id``, ``speaker``, ``emotion``, ``start`` (first frame); ``phonemes`` int64 [L, 11]
(with ``with_phonemes``: each frame's 11-frame phoneme window, SIL past the clip's ends);
``coeffs`` float32 [L, 260]; ``exp`` float32 [L, 64]; ``style_label`` int (index into :attr:`StyleClipDataset.styles`);
``style_exp`` / ``positive_exp`` / ``negative_exp`` float32 [S, 64] and ``style_mask`` /
``positive_mask`` / ``negative_mask`` bool [S] (True = padding).

Clips without a ``phonemes`` file (the synthetic corpus leaves one out where alignment failed; with
``with_phonemes`` only) or shorter than L are left out with a warning. Items are deterministic
functions of (seed, epoch, index), as in :class:`~stylization.data.datasets.ClipWindowDataset`.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from stylization.constants import COEFF_SLICES
from stylization.data.corpus import ClipRecord, Corpus
from stylization.data.datasets import LRUCache
from stylization.data.phonemes import phoneme_windows
from stylization.errors import DataError

log = logging.getLogger(__name__)


def style_of(rec: ClipRecord) -> tuple[str, str]:
    return rec.speaker, rec.emotion


def split_styles(corpus: Corpus | str | os.PathLike, split: str, speakers=None,
                 with_phonemes: bool = False) -> list[tuple[str, str]]:
    """The sorted (speaker, emotion) styles of a split (of its clips with a phonemes file, with
    ``with_phonemes``): the classes of the style discriminators and class heads."""
    corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
    return sorted({style_of(r) for r in corpus.clips(split, speakers) if not with_phonemes or "phonemes" in r.files})


def crop_style(exp: np.ndarray, frames: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """A clip's expressions [T, 64] -> (crop zero-padded to [frames, 64], mask [frames], True = padding).

    A clip longer than ``frames`` is cropped at a random start (``rng``) or centred (``rng=None``)."""
    n = len(exp)
    if n > frames:
        start = int(rng.integers(n - frames + 1)) if rng is not None else (n - frames) // 2
        exp, n = exp[start: start + frames], frames
    out = np.zeros((frames, exp.shape[1]), np.float32)
    out[:n] = exp
    mask = np.ones(frames, bool)
    mask[:n] = False
    return out, mask


class StyleClipDataset(Dataset):
    """Target windows with style, positive and negative clips (see the module docstring).

    Args:
        corpus: a :class:`Corpus` or its root.
        split: the index's split.
        window_frames: L, target frames per item (StyleTalk trains on 64).
        style_frames: S, the longest style clip (the official encoder takes up to 256).
        styles: the style list that ``style_label`` indexes (default: this split's, sorted); a
            target whose style is not in it gets label -1.
        hard_negative: probability that the negative is the same speaker in another emotion.
        with_phonemes: carry ``phonemes`` (and leave out clips without a phonemes file); False for
            models that read expressions only (SAAS's codebook).
        speakers, seed: as :class:`~stylization.data.datasets.ClipWindowDataset`.
    """

    def __init__(self, corpus: Corpus | str | os.PathLike, split: str = "train", window_frames: int = 64,
                 style_frames: int = 256, styles: list[tuple[str, str]] | None = None, hard_negative: float = 0.5,
                 speakers: list[str] | None = None, seed: int = 0, cache_clips: int = 4096, with_phonemes: bool = True):
        self.corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        self.window_frames, self.style_frames = int(window_frames), int(style_frames)
        self.hard_negative, self.seed, self.epoch = float(hard_negative), int(seed), 0
        self.with_phonemes = bool(with_phonemes)
        clips = self.corpus.clips(split, speakers)
        no_phonemes = [r.id for r in clips if "phonemes" not in r.files] if self.with_phonemes else []
        clips = [r for r in clips if r.id not in set(no_phonemes)]
        short = [r.id for r in clips if r.n_frames < self.window_frames]
        for what, ids in (("without a phonemes file", no_phonemes), (f"shorter than {window_frames} frames", short)):
            if ids:
                log.warning("leaving out %d clips %s: %s", len(ids), what, ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else ""))
        self.clips = [r for r in clips if r.n_frames >= self.window_frames]
        if not self.clips:
            needs = "phonemes and " if self.with_phonemes else ""
            raise DataError(f"no clip of split {split!r} has {needs}at least {window_frames} frames", self.corpus.root)
        self.styles = sorted({style_of(r) for r in self.clips}) if styles is None else [tuple(s) for s in styles]
        label = {s: i for i, s in enumerate(self.styles)}
        self.labels = [label.get(style_of(r), -1) for r in self.clips]
        self.by_style: dict[tuple[str, str], list[int]] = {}
        for ci, rec in enumerate(self.clips):
            self.by_style.setdefault(style_of(rec), []).append(ci)
        if len(self.by_style) < 2:
            raise DataError(f"split {split!r} has one style only; the triplet needs at least two", self.corpus.root)
        self.slots = [(ci, lo, min(lo + self.window_frames - 1, r.n_frames - self.window_frames))
                      for ci, r in enumerate(self.clips) for lo in range(0, r.n_frames - self.window_frames + 1,
                                                                          self.window_frames)]
        self._cache = LRUCache(cache_clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.slots)

    def _arrays(self, ci: int) -> tuple[np.ndarray, np.ndarray]:
        """(coefficients [T, 260], phoneme windows [T, 11] or None) of clip ``ci``."""
        rec = self.clips[ci]
        return self._cache.get_or_make(ci, lambda: (self.corpus.load_coeffs(rec),
                                                    phoneme_windows(self.corpus.load_phonemes(rec))
                                                    if self.with_phonemes else None))

    def _style(self, ci: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        exp, mask = crop_style(self._arrays(ci)[0][:, COEFF_SLICES["exp"]], self.style_frames, rng)
        return torch.from_numpy(exp), torch.from_numpy(mask)

    def __getitem__(self, index: int) -> dict:
        ci, lo, hi = self.slots[index]
        rec = self.clips[ci]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = int(rng.integers(lo, hi + 1))
        coeffs, windows = self._arrays(ci)
        coeffs = np.array(coeffs[start: start + self.window_frames], np.float32)
        same = [c for c in self.by_style[style_of(rec)] if c != ci] or [ci]
        style_ci = same[int(rng.integers(len(same)))]
        positive = [c for c in same if c != style_ci] or same
        positive_ci = positive[int(rng.integers(len(positive)))]
        others = [s for s in self.by_style if s != style_of(rec)]
        kin = [s for s in others if s[0] == rec.speaker]
        pool = kin if kin and rng.random() < self.hard_negative else others
        negative_style = pool[int(rng.integers(len(pool)))]
        negative_ci = self.by_style[negative_style][int(rng.integers(len(self.by_style[negative_style])))]
        item = {"clip_id": rec.id, "speaker": rec.speaker, "emotion": rec.emotion, "start": start,
                "coeffs": torch.from_numpy(coeffs), "exp": torch.from_numpy(coeffs[:, COEFF_SLICES["exp"]].copy()),
                "style_label": self.labels[ci]}
        if windows is not None:
            item["phonemes"] = torch.from_numpy(windows[start: start + self.window_frames].copy())
        for name, c in (("style", style_ci), ("positive", positive_ci), ("negative", negative_ci)):
            item[f"{name}_exp"], item[f"{name}_mask"] = self._style(c, rng)
        return item


class StyleTransferDataset(Dataset):
    """SAAS's items: a source window with its sound, and windows of a target style around it.

    Each item is a :class:`~stylization.data.datasets.ClipWindowDataset` item (the source window A:
    ``exp``, ``coeffs``, ``mel``, ``blink``, ``source_exp``, ...) plus ``source_label`` (A's style
    index, -1 when not in ``styles``) and three windows of ``window_frames`` frames cut from whole
    clips: ``style_exp`` (another style B: the style to transfer to; with probability
    ``hard_negative`` the same speaker in another emotion), ``positive_exp`` (another clip of B's
    style, when there is one), ``negative_exp`` (a style other than B's), with ``style_label`` (B's
    index). Deterministic in (seed, epoch, index) like the base.
    """

    def __init__(self, base, styles: list[tuple[str, str]] | None = None, hard_negative: float = 0.5):
        self.base, self.hard_negative = base, float(hard_negative)
        self.by_style: dict[tuple[str, str], list[int]] = {}
        for ci, rec in enumerate(base.clips):
            self.by_style.setdefault(style_of(rec), []).append(ci)
        if len(self.by_style) < 2:
            raise DataError("the split has one (speaker, emotion) style only; style transfer needs two",
                            base.corpus.root)
        self.styles = sorted(self.by_style) if styles is None else [tuple(s) for s in styles]
        self.label = {s: i for i, s in enumerate(self.styles)}
        self._cache = LRUCache(4096)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def _window(self, ci: int, rng: np.random.Generator) -> torch.Tensor:
        rec = self.base.clips[ci]
        exp = self._cache.get_or_make(ci, lambda: self.base.corpus.load_coeffs(rec)[:, COEFF_SLICES["exp"]])
        return torch.from_numpy(crop_style(exp, self.base.window_frames, rng)[0])

    def _pick(self, pool: list, rng: np.random.Generator):
        return pool[int(rng.integers(len(pool)))]

    def __getitem__(self, index: int) -> dict:
        item = self.base[index]
        rng = np.random.default_rng([self.base.seed, self.base.epoch, index, 1])  # apart from the base's draws
        source = (item["speaker"], item["emotion"])
        others = [s for s in self.by_style if s != source]
        kin = [s for s in others if s[0] == source[0]]
        target = self._pick(kin if kin and rng.random() < self.hard_negative else others, rng)
        style_ci = self._pick(self.by_style[target], rng)
        positive_ci = self._pick([c for c in self.by_style[target] if c != style_ci] or [style_ci], rng)
        negative_ci = self._pick(self.by_style[self._pick([s for s in self.by_style if s != target], rng)], rng)
        item.update(source_label=self.label.get(source, -1), style_label=self.label.get(target, -1),
                    style_exp=self._window(style_ci, rng), positive_exp=self._window(positive_ci, rng),
                    negative_exp=self._window(negative_ci, rng))
        return item
