"""Art-style targets for Style-A on real data: a frozen VToonify-D renders each processed clip.

Style-A trains on (real frames, the same frames in an art style). The synthetic corpus draws its
styles; on MEAD or HDTF they come from VToonify-D (:class:`~stylization.style_a.teacher.ArtTeacher`)
in styles drawn per clip from ``exstyle_code.npy``:

* ``clips/<dir>/style_<name>.mp4``: the clip's frames in style ``name`` (same frame count and
  rate as ``video.mp4``, the teacher's output size), named in the clip's ``files`` as
  ``style_<name>``, which is what ``stage.targets=corpus`` reads;
* ``art/<name>/ref_<k>.png``: the first frame of the first few clips rendered in that style, the
  style's reference pictures (``art/index.json``), from which Style-A's pSp takes the art code.

``name`` is the exstyle entry's key with every character outside ``[A-Za-z0-9_-]`` replaced by
``_`` (``"cartoon/026.jpg"`` -> ``cartoon_026_jpg``). The styles of a clip depend only on its id,
the seed and the style list, so shards and reruns agree; a clip whose style videos exist is
skipped (the pass is resumable), each video appears atomically, and the clip's ``record.json``
is rewritten atomically after each style.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from stylization.constants import FPS
from stylization.data.corpus import write_json_atomic
from stylization.data.parsing import landmark_parsing
from stylization.data.render_inputs import RenderInputs
from stylization.data.video import read_video, write_video
from stylization.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def style_name(key: str) -> str:
    """An ``exstyle_code.npy`` key -> the file-safe style name used in ``files`` and ``art/``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(key))


def choose_styles(clip_id: str, styles: list[str], per_clip: int, seed: int) -> list[str]:
    """``per_clip`` distinct styles of ``styles`` for one clip, a function of (id, seed, styles) only."""
    if per_clip < 1:
        raise ConfigError(f"art.per_clip must be >= 1, got {per_clip}")
    rng = np.random.default_rng([int(seed), zlib.crc32(clip_id.encode())])
    picks = rng.choice(len(styles), size=min(per_clip, len(styles)), replace=False)
    return [styles[i] for i in sorted(picks)]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class ArtTargetOptions:
    per_clip: int = 1          # styles rendered per clip
    seed: int = 0              # which styles each clip gets
    batch_size: int = 8        # frames per teacher call
    references: int = 3        # reference pictures kept per style (art/<name>/ref_<k>.png)
    device: str = "cpu"


class ArtTargets:
    """Renders the chosen styles of processed clips with a frozen teacher.

    Args:
        teacher: :class:`~stylization.style_a.teacher.ArtTeacher` (frozen, any device).
        inputs: how frames, parsing and the identity face are made (the Style-A input builder,
            ``content_size`` = the teacher's ``in_size``).
        codes: {style name: art W+ [1, L, S]} (:meth:`ArtTeacher.art_code` of the exstyle entries).
    """

    def __init__(self, teacher, inputs: RenderInputs, codes: dict[str, torch.Tensor], options: ArtTargetOptions):
        if not codes:
            raise ConfigError("no art styles to render (art.styles is empty)")
        if inputs.content_size != teacher.content_size:
            raise ConfigError(f"the input builder's content size {inputs.content_size} is not the teacher's "
                              f"in_size {teacher.content_size}")
        self.device = torch.device(options.device)
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.inputs, self.options = inputs, options
        self.codes = {name: code.to(self.device) for name, code in codes.items()}
        self.styles = sorted(self.codes)

    def render(self, video: np.ndarray, landmarks: np.ndarray, style: str) -> np.ndarray:
        """A clip's frames uint8 [T, H, W, 3] and landmarks [T, 68, 2] (px of the frame) -> its frames
        in ``style``, uint8 [T, O, O, 3]. The identity code comes from the first frame."""
        face = self.inputs.identity(video[0], landmarks[0])["identity_face"][None].to(self.device)
        code = self.teacher.style(face, self.codes[style])
        c, out = self.inputs.content_size, []
        for s in range(0, len(video), self.options.batch_size):
            frames = self.inputs.frames(video[s:s + self.options.batch_size]).to(self.device)
            parsing = None
            if self.inputs.parsing == "landmarks":
                parsing = torch.from_numpy(np.stack([landmark_parsing(lm, c, c / video.shape[1])
                                                     for lm in landmarks[s:s + len(frames)]])).to(self.device)
            out.append(to_uint8(self.teacher(frames, code, parsing)))
        return np.concatenate(out)

    def clip(self, out: str, clip_dir: str) -> list[str]:
        """Render the missing chosen styles of one processed clip (``out/clips/<dir>``); returns the
        styles rendered now. The clip's ``record.json`` names every style video it has."""
        marker = os.path.join(clip_dir, "record.json")
        with open(marker) as f:
            record = json.load(f)
        files = dict(record["files"])
        todo = [s for s in choose_styles(record["id"], self.styles, self.options.per_clip, self.options.seed)
                if f"style_{s}" not in files or not os.path.isfile(os.path.join(out, files[f"style_{s}"]))]
        if not todo:
            return []
        video = read_video(os.path.join(out, files["video"]), fps=float(record.get("fps", FPS)))
        landmarks = np.load(os.path.join(out, files["landmarks"]))
        n = min(len(video), len(landmarks), int(record["n_frames"]))
        if n < 1:
            raise DataError("no frames to stylise", clip_dir)
        rel_dir = os.path.relpath(clip_dir, out)
        for style in todo:
            frames = self.render(video[:n], landmarks[:n], style)
            write_video(os.path.join(clip_dir, f"style_{style}.mp4"), frames, fps=float(record.get("fps", FPS)))
            files[f"style_{style}"] = os.path.join(rel_dir, f"style_{style}.mp4").replace(os.sep, "/")
            record["files"] = files
            write_json_atomic(marker, record)
            self._reference(out, style, frames[0])
        return todo

    def _reference(self, out: str, style: str, frame: np.ndarray) -> None:
        folder = os.path.join(out, "art", style)
        os.makedirs(folder, exist_ok=True)
        have = [n for n in os.listdir(folder) if n.startswith("ref_") and n.endswith(".png")]
        if len(have) >= self.options.references:
            return
        path = os.path.join(folder, f"ref_{len(have)}.png")
        tmp = os.path.join(folder, f".tmp{os.getpid()}.png")
        cv2.imwrite(tmp, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        os.replace(tmp, path)

    def run(self, out: str, clip_dirs: list[str]) -> dict:
        """Every clip of ``clip_dirs`` (names under ``out/clips``, finished ones); a failing clip is
        logged and left without targets. Returns counts: rendered videos, clips done before, failed."""
        counts = {"art_videos": 0, "art_clips_done_before": 0, "art_failed": 0}
        for name in tqdm(clip_dirs, desc="art targets", unit="clip"):
            clip_dir = os.path.join(out, "clips", name)
            try:
                done = self.clip(out, clip_dir)
            except (DataError, OSError, ValueError) as exc:
                counts["art_failed"] += 1
                log.warning("art targets skipped for %s: %s", name, exc)
                continue
            counts["art_videos"] += len(done)
            counts["art_clips_done_before"] += not done
        return counts


def copy_art_pictures(src: str, out: str) -> int:
    """A user's art references ``src/<style>/*.{png,jpg,...}`` -> ``out/art/<style>/`` (existing
    files kept); returns how many pictures were copied."""
    if not os.path.isdir(src):
        raise DataError("art pictures folder not found (expected <style>/<picture> inside)", src)
    copied = 0
    for style in sorted(os.listdir(src)):
        folder = os.path.join(src, style)
        if not os.path.isdir(folder):
            continue
        dst = os.path.join(out, "art", style_name(style))
        os.makedirs(dst, exist_ok=True)
        for name in sorted(os.listdir(folder)):
            if name.lower().endswith(PICTURE_SUFFIXES) and not os.path.exists(os.path.join(dst, name)):
                tmp = os.path.join(dst, f".tmp{os.getpid()}")
                shutil.copyfile(os.path.join(folder, name), tmp)
                os.replace(tmp, os.path.join(dst, name))
                copied += 1
    return copied


def write_art_index(out: str) -> dict[str, list[str]]:
    """``out/art/index.json`` ({style: [picture paths relative to out]}) from what ``out/art`` holds;
    returns it (empty, and no file written, when there are no pictures)."""
    root = os.path.join(out, "art")
    index = {}
    for style in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        folder = os.path.join(root, style)
        if os.path.isdir(folder):
            pictures = sorted(n for n in os.listdir(folder)
                              if n.lower().endswith(PICTURE_SUFFIXES) and not n.startswith("."))
            if pictures:
                index[style] = [f"art/{style}/{n}" for n in pictures]
    if index:
        write_json_atomic(os.path.join(root, "index.json"), index)
    return index
