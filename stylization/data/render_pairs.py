"""Training pairs for the Style-A renderer: (source frame, consecutive target frames, art style).

An item is a source frame of a clip, ``pairs_per_item`` (K) runs of ``frames_per_item`` (F)
consecutive target frames of the same clip with their 73×27 coefficient windows, one art style
and a reference picture of that style. (Several runs per item share one decode of the clip's
videos, which dominates the data cost.)
The art-style ground truth is either the clip's stored stylised video (``files["style_<name>"]``,
``targets="corpus"``) or left to a frozen VToonify-D teacher in the stage (``targets="teacher"``:
the item then carries the real target frames). ``targets="real"`` is for a photo-real renderer
(PIRenderer): the real frames are the targets, and items have no art style (no ``art``, ``style``,
``style_index``; the corpus needs no art index).

Keys (images float32 in [-1, 1], channels first; F = ``frames_per_item``; C, P and the source's
tensors come from the shared input builder, :class:`~stylization.data.render_inputs.RenderInputs`,
the one inference uses):

* ``source`` [3, C, C] at the content size; ``source_parsing`` [19, C, C] with landmark parsing
* ``identity_face`` [3, P, P] (the source frame at the code size for the identity code: resized,
  or FFHQ-aligned from its landmarks with ``identity_alignment="ffhq"``)
* ``art`` [3, P, P] (a reference picture of the style, for the art code); ``style_index`` (int)
* ``semantic`` [K, F, 73, 27]; ``target`` [K, F, 3, O, O] stylised targets at ``out_size`` (corpus)
* ``source_semantic`` [73, 27]: the source frame's own window (driving with it asks for no motion)
* ``styled_source`` [3, O, O]: the stylised source frame (corpus targets)
* ``target_real`` [K, F, 3, C, C]: the real target frames (the warping loss; the teacher's input)
* ``target_landmarks`` [K, F, 68, 2]: their landmarks in pixels of the ``out_size`` frame
* ``source_keypoints`` [68, 2], ``target_keypoints`` [K, F, 68, 2]: the source's and the targets'
  landmarks in pixels of the content frame C (what a keypoint-conditioned generator draws)
* ``target_parsing`` [K, F, 19, C, C] (teacher targets with landmark parsing)
* ``clip_id``, ``source_frame``, ``target_frames`` [K] (first frame of each run), ``style`` (name)

Each clip gives ``items_per_clip`` items per epoch. With ``deterministic=True`` (evaluation) the
source is frame 0, the runs start at evenly spaced frames after it, and styles and references
cycle with the index; otherwise everything is drawn from a generator seeded by
(seed, epoch, index), and the source is ``source_frame``: "random" (any frame, the official
recipe), "first" (frame 0) or "closed_mouth" (the frame whose inner lips, landmarks 61-63 and
65-67, are closest together: a portrait-like identity photo, so the window alone says how far to
open the mouth).
"""

from __future__ import annotations

import json
import logging
import os

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stylization.constants import INNER_LIP_PAIRS, N_LANDMARKS, SEMANTIC_DIM
from stylization.data.coeffs import semantic_windows
from stylization.data.corpus import Corpus
from stylization.data.datasets import LRUCache
from stylization.data.parsing import landmark_parsing
from stylization.data.render_inputs import RenderInputs, resize, to_tensor
from stylization.data.video import read_video
from stylization.errors import ConfigError, DataError

log = logging.getLogger(__name__)
TARGETS = ("corpus", "teacher", "real")


def read_art_index(root: str) -> dict[str, list[str]]:
    path = os.path.join(root, "art", "index.json")
    if not os.path.isfile(path):
        raise DataError("no art reference index (art/index.json: {style: [picture paths]})", path)
    with open(path) as f:
        return {k: [os.path.join(root, p) for p in v] for k, v in json.load(f).items()}


def read_picture(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError("not a readable image", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


SOURCE_FRAMES = ("random", "first", "closed_mouth")


def inner_lip_distance(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks [T, 68, 2] -> [T], the mean distance between the facing inner-lip points (px)."""
    upper, lower = [a for a, _ in INNER_LIP_PAIRS], [b for _, b in INNER_LIP_PAIRS]
    return np.linalg.norm(np.asarray(landmarks[:, upper], np.float32) - np.asarray(landmarks[:, lower], np.float32),
                          axis=-1).mean(-1)


def closed_mouth_frame(landmarks: np.ndarray) -> int:
    """Landmarks [T, 68, 2] -> the frame whose inner lips (61-63 over 67-65) are closest together."""
    return int(np.argmin(inner_lip_distance(landmarks)))


TARGET_SAMPLINGS = ("uniform", "mouth")


def mouth_weighted_starts(gap: np.ndarray, source: int, f: int, k: int, rng: np.random.Generator) -> list[int]:
    """``k`` run starts (runs of ``f`` frames) drawn with probability proportional to how far the
    run's inner-lip gap is from the source frame's, plus that quantity's mean: half of the draws
    go where the mouth differs from the source, the rest stay close to uniform. gap [T] px."""
    runs = np.lib.stride_tricks.sliding_window_view(gap, f).mean(-1)  # [T - f + 1]
    change = np.abs(runs - gap[source])
    weight = change + change.mean() + 1e-6
    return [int(v) for v in rng.choice(len(runs), size=k, p=weight / weight.sum())]


def drop_damaged(corpus, clips: list, problems: dict[str, str], skip_damaged: bool) -> list:
    """``clips`` without those in ``problems`` (clip id -> what is wrong): a DataError naming the first
    ten unless ``skip_damaged``, then a warning."""
    if problems:
        lines = "; ".join(f"{cid}: {p}" for cid, p in list(problems.items())[:10])
        if not skip_damaged:
            raise DataError(f"{len(problems)} damaged clips ({lines}); fix them or set data.skip_damaged=true",
                            corpus.root)
        log.warning("skipping %d damaged clips: %s", len(problems), lines)
    return [r for r in clips if r.id not in problems]


class RenderPairDataset(Dataset):
    """Args (keyword-only after ``split``; the stage passes every value from its config):

    * corpus: a :class:`Corpus` or its root; split: "train" | "val" | "test";
    * styles: art style names (None: every style of art/index.json);
    * inputs: the :class:`~stylization.data.render_inputs.RenderInputs` (content size C, code
      size P, identity alignment, parsing) shared with inference;
    * out_size (O), pairs_per_item (K), frames_per_item (F, >= 1), items_per_clip;
    * targets: "corpus" | "teacher"; deterministic (evaluation order); seed; speakers (None: all);
    * source_frame: "random" | "first" | "closed_mouth" (training only);
    * target_sampling: "uniform" | "mouth" (training only): the target runs uniformly over the
      clip, or weighted towards runs whose mouth differs from the source's
      (:func:`mouth_weighted_starts`; a from-scratch renderer sees more of the motion it must learn);
    * skip_damaged: leave out clips with missing or mis-shaped files (and, for corpus targets,
      without a stylised video of any of the styles), listing them in the log, instead of raising;

    With corpus targets each item's style is drawn among the styles whose video its clip has
    (the synthetic corpus has them all; real corpora have the styles the preprocessing's art pass
    rendered for that clip, :mod:`stylization.preprocess.art_targets`).
    * frame_cache_clips: decoded clips kept per worker (two videos each).
    """

    def __init__(self, corpus, split: str, *, styles, inputs: RenderInputs, out_size: int, pairs_per_item: int,
                 frames_per_item: int, items_per_clip: int, targets: str, deterministic: bool, seed: int, speakers,
                 source_frame: str, skip_damaged: bool, frame_cache_clips: int = 6, target_sampling: str = "uniform"):
        self.corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        if targets not in TARGETS:
            raise ConfigError(f"stage.targets must be one of {list(TARGETS)}, got {targets!r}")
        if source_frame not in SOURCE_FRAMES:
            raise ConfigError(f"stage.source_frame must be one of {list(SOURCE_FRAMES)}, got {source_frame!r}")
        # "real": the real frames are the targets (a photo-real renderer): no art style, no art index.
        self.art = read_art_index(self.corpus.root) if targets != "real" else {}
        self.styles = list(styles) if styles else sorted(self.art)
        missing = [s for s in self.styles if not self.art.get(s)]
        if missing:
            raise DataError(f"no reference pictures for styles {missing}", os.path.join(self.corpus.root, "art"))
        self.inputs, self.out_size = inputs, int(out_size)
        self.pairs_per_item, self.frames_per_item, self.targets = int(pairs_per_item), int(frames_per_item), targets
        self.source_frame = source_frame
        if target_sampling not in TARGET_SAMPLINGS:
            raise ConfigError(f"stage.target_sampling must be one of {list(TARGET_SAMPLINGS)}, got {target_sampling!r}")
        self.target_sampling = target_sampling
        self.deterministic, self.seed, self.epoch = deterministic, int(seed), 0
        clips = [r for r in self.corpus.clips(split, speakers) if r.n_frames >= self.frames_per_item]
        self.clips = self._sound_clips(clips, bool(skip_damaged))
        self.clip_styles = [[s for s in self.styles if targets != "corpus" or f"style_{s}" in r.files]
                            for r in self.clips]
        if not self.clips:
            raise DataError(f"no usable clip of at least {self.frames_per_item} frames in split {split!r}",
                            self.corpus.root)
        self.slots = [(ci, j) for ci in range(len(self.clips)) for j in range(int(items_per_clip))]
        self._videos = LRUCache(frame_cache_clips * 2)
        self._pictures = LRUCache(64)

    def _sound_clips(self, clips: list, skip_damaged: bool) -> list:
        """The clips whose files are sound; the others raise, or are logged and left out."""
        problems = {}
        for rec in clips:
            problem = self.corpus.check_clip(rec)
            none = self.targets == "corpus" and not any(f"style_{s}" in rec.files for s in self.styles)
            if problem is None and none:
                problem = f"no stylised video for any of {self.styles} (files['style_<name>']; or use stage.targets=teacher)"
            if problem is not None:
                problems[rec.id] = problem
        return drop_damaged(self.corpus, clips, problems, skip_damaged)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.slots)

    def _video(self, ci: int, kind: str) -> np.ndarray:
        rec = self.clips[ci]

        def load():
            frames = read_video(self.corpus.path(rec, kind), fps=rec.fps)
            if len(frames) < rec.n_frames:
                raise DataError(f"{kind} has {len(frames)} frames, index says {rec.n_frames}", self.corpus.path(rec, kind))
            return frames

        return self._videos.get_or_make((ci, kind), load)

    def _art(self, path: str) -> torch.Tensor:
        """A reference picture as the builder's art tensor [3, P, P] (read and resized once per worker)."""
        return self._pictures.get_or_make(path, lambda: self.inputs.art(read_picture(path)))

    def __getitem__(self, index: int) -> dict:
        ci, _ = self.slots[index]
        rec = self.clips[ci]
        n, k, f = rec.n_frames, self.pairs_per_item, self.frames_per_item
        if self.deterministic:
            source = 0
            starts = [round((i + 1) * (n - f) / k) for i in range(k)]
            styles = self.clip_styles[ci]
            if styles:
                style = styles[index % len(styles)]
                art_path = self.art[style][index // len(styles) % len(self.art[style])]
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            source = int(rng.integers(n))
            gap = None
            if self.source_frame == "closed_mouth" or self.target_sampling == "mouth":
                gap = inner_lip_distance(np.load(self.corpus.path(rec, "landmarks"), mmap_mode="r")[:n])
            if self.source_frame == "first":
                source = 0
            elif self.source_frame == "closed_mouth":
                source = int(np.argmin(gap))
            if self.target_sampling == "mouth":
                starts = mouth_weighted_starts(gap, source, f, k, rng)
            else:
                starts = [int(v) for v in rng.integers(0, n - f + 1, size=k)]
            styles = self.clip_styles[ci]
            if styles:
                style = styles[int(rng.integers(len(styles)))]
                art_path = self.art[style][int(rng.integers(len(self.art[style])))]
        frames = np.array([[s + i for i in range(f)] for s in starts])  # [K, F]
        video = self._video(ci, "video")
        coeffs = np.asarray(np.load(self.corpus.path(rec, "coeffs"), mmap_mode="r"), np.float32)
        landmarks = np.load(self.corpus.path(rec, "landmarks"), mmap_mode="r")
        o, inputs = self.out_size, self.inputs
        identity = inputs.identity(video[source], np.asarray(landmarks[source]))
        item = {
            "clip_id": rec.id, "source_frame": source, "target_frames": torch.tensor(starts),
            "source": identity["source"],
            "semantic": torch.from_numpy(semantic_windows(coeffs, frames.ravel())).reshape(k, f, SEMANTIC_DIM, -1),
            "source_semantic": torch.from_numpy(semantic_windows(coeffs, np.array([source])))[0],
            "identity_face": identity["identity_face"],
        }
        if self.styles:
            item.update(style=style, style_index=self.styles.index(style), art=self._art(art_path).clone())
        if "source_parsing" in identity:
            item["source_parsing"] = identity["source_parsing"]
        item["source_keypoints"] = identity["source_keypoints"]
        item["target_keypoints"] = inputs.keypoints(landmarks[frames.ravel()], video.shape[1]).reshape(k, f, N_LANDMARKS, 2)
        item["target_real"] = inputs.frames(video[frames])
        item["target_landmarks"] = torch.from_numpy(np.asarray(landmarks[frames.ravel()], np.float32)
                                                    * (o / video.shape[1])).reshape(k, f, N_LANDMARKS, 2)
        if self.targets == "corpus":
            styled = self._video(ci, f"style_{style}")
            item["target"] = to_tensor(np.stack([[resize(styled[t], o) for t in run] for run in frames]))
            item["styled_source"] = to_tensor(resize(styled[source], o))
        elif inputs.parsing == "landmarks":
            c = inputs.content_size
            item["target_parsing"] = torch.from_numpy(np.stack([[landmark_parsing(landmarks[t], c, c / video.shape[1])
                                                                 for t in run] for run in frames]))
        return item
