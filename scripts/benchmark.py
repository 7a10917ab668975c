"""Any method's videos against the ground truth:
``python scripts/benchmark.py gen=DIR gt=DIR out=FILE.json [metrics=[ssim,psnr,fid,cpbd,m_lmd,f_lmd,csim,lse,
d_l,d_v,d_a,sld,slv,smd]] [size=256]``.

Videos are matched by file stem (``gen/<clip>.mp4`` with ``gt/<clip>.mp4``), read at 25 fps,
cut to the shorter of the two and resized to ``size`` x ``size``. Per clip (docs/benchmark.md
defines each metric and names its source):

* ``ssim``, ``psnr``: the mean over frame pairs (``ssim_definition``: vico = piq's, as the ViCo
  baseline; skimage = ours); identical frames give ``psnr_cap`` dB instead of infinity;
* ``fid``: one Fréchet Inception Distance over the pooled frames of every clip, generated
  against ground truth (an aggregate only; needs ``inception=`` the weights file);
* ``cpbd``: the generated frames' sharpness (the ``cpbd`` package's algorithm, grayscale);
* ``m_lmd``, ``f_lmd``: 68 landmarks on both videos (``landmarks=dlib``, or ``face_alignment``:
  FAN, as the ViCo baseline; the package fetches its weights on first use), mouth and all points, pixels of
  the ``size`` frame, over frames where the ground truth has a face;
* ``d_l``, ``d_v``, ``d_a`` (percent): the reference-frame style transfer paper's landmark distance,
  velocity difference and open-mouth area difference, frame by frame, on the same landmarks;
  ``sld``, ``slv``, ``smd`` (percent): its style-aware versions (Eq. 10: each window of the ground
  truth, the style reference, matched to the generated window that moves most like it), averaged
  over the window grid of :mod:`stylization.metrics.style_motion`;
* ``csim``: the identity embedding of each generated frame against the ground truth's first
  frame (the self-driven protocol's identity picture): dlib's face-recognition ResNet
  (``identity=dlib``, ships offline) or ArcFace (``identity=arcface arcface=backbone.pth``);
* ``lse_d``, ``lse_c`` (and ``sync_offset``): SyncNet on the generated frames and the ground
  truth's own sound (``metrics`` entry ``lse``; needs ``syncnet=``: the official
  ``syncnet_v2.model`` or a ``stage=syncnet`` run of this project); ``sync_conf`` in the
  aggregate is ``lse_c`` under the papers' name, ``sync_offset`` the mean AV offset in frames (+5
  for a video 5 frames late: LSE-D and LSE-C are read at the best offset, so a lag shows here).

The aggregate is the mean over clips of each metric (clips where a metric is undefined, e.g. no
face, are left out of that mean and counted in ``undefined``). A video that is missing on either
side or cannot be read is listed in ``missing`` with the reason and left out, never silently.
Writes ``out`` atomically and prints, last, one JSON line: the aggregate plus ``clips`` and
``missing``.
"""

import json
import logging
import math
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("benchmark")

METRICS = ("ssim", "psnr", "fid", "cpbd", "m_lmd", "f_lmd", "csim", "lse", "d_l", "d_v", "d_a", "sld", "slv", "smd")
LANDMARK_METRICS = {"m_lmd", "f_lmd", "d_l", "d_v", "d_a", "sld", "slv", "smd"}  # they detect 68 landmarks
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def videos_by_stem(folder: str) -> dict[str, str]:
    """{file stem: path} of the videos directly inside ``folder``."""
    from stylization.errors import DataError

    if not os.path.isdir(folder):
        raise DataError("not a folder of videos", folder)
    return {Path(n).stem: os.path.join(folder, n) for n in sorted(os.listdir(folder))
            if n.lower().endswith(VIDEO_SUFFIXES)}


class Scorers:
    """The models some metrics need, built once (dlib landmarks, dlib embedder, SyncNet, Inception),
    and the FID features pooled over clips."""

    def __init__(self, cfg: DictConfig, metrics: list[str]):
        from stylization.errors import ConfigError

        self.detector = self.embedder = self.syncnet = self.inception = None
        self.fid_features: dict[str, list] = {"gen": [], "gt": []}
        if "fid" in metrics:
            from stylization.loading import inception_fid

            self.inception = inception_fid(cfg.inception, str(cfg.device))
        if LANDMARK_METRICS & set(metrics):
            from stylization.preprocess.faces import LandmarkDetector

            if cfg.landmarks not in ("dlib", "face_alignment"):
                raise ConfigError(f"landmarks must be dlib or face_alignment, got {cfg.landmarks!r}")
            landmarks = LandmarkDetector(str(cfg.landmarks), str(cfg.device))

            def detect(frames):
                found_landmarks, found = landmarks.track(frames)
                found_landmarks = found_landmarks.copy()
                found_landmarks[~found] = math.nan  # LMD counts only frames with a detected face
                return found_landmarks

            self.detector = detect
        if "csim" in metrics:
            from stylization.preprocess.faces import ArcFaceEmbedder, FaceEmbedder

            if cfg.identity not in ("dlib", "arcface"):
                raise ConfigError(f"identity must be dlib or arcface, got {cfg.identity!r}")
            if cfg.identity == "arcface" and not cfg.arcface:
                raise ConfigError("identity=arcface needs arcface=PATH, an insightface backbone.pth "
                                  "(checkpoints/README.md)")
            self.embedder = ArcFaceEmbedder(str(cfg.arcface), str(cfg.device)) if cfg.identity == "arcface" \
                else FaceEmbedder()
        if "lse" in metrics:
            if not cfg.syncnet:
                raise ConfigError("metric lse needs syncnet=PATH (the official syncnet_v2.model, or a syncnet run trained "
                                  "here; see docs/benchmark.md)")
            from stylization.runs import load_syncnet

            self.syncnet = load_syncnet(str(cfg.syncnet)).to(str(cfg.device))


def score_clip(gen, gt, wav, metrics: list[str], cfg: DictConfig, scorers: Scorers) -> dict:
    """uint8 [T, S, S, 3] generated and ground-truth frames (same T and S), the ground truth's
    16 kHz sound -> {metric: value} (NaN where undefined)."""
    from stylization.metrics import cpbd, psnr_frames, ssim_frames

    row = {"frames": int(len(gen))}
    definition = str(cfg.ssim_definition)
    if "ssim" in metrics:
        row["ssim"] = float(ssim_frames(gen, gt, definition).mean())
    if "psnr" in metrics:
        values = psnr_frames(gen, gt, definition).clamp(max=float(cfg.psnr_cap))
        row["psnr"] = float(values.nan_to_num(nan=float(cfg.psnr_cap)).mean())
    if "cpbd" in metrics:
        row["cpbd"] = float(cpbd(gen).mean())
    if scorers.inception is not None:
        from stylization.metrics.fid import inception_features

        scorers.fid_features["gen"].append(inception_features(scorers.inception, gen))
        scorers.fid_features["gt"].append(inception_features(scorers.inception, gt))
    if scorers.detector is not None:
        from stylization.metrics import coordinate_lmd
        from stylization.metrics.style_motion import d_a, d_l, d_v, sld, slv, smd

        if gen.shape != gt.shape:
            raise ValueError(f"the frames must match: {list(gen.shape)} vs {list(gt.shape)}")
        lm_gen, lm_gt = scorers.detector(gen), scorers.detector(gt)
        result = coordinate_lmd(lm_gen, lm_gt)
        for key in ("m_lmd", "f_lmd"):
            if key in metrics:
                row[key] = float(getattr(result, key))
        row["lmd_frames"] = int(result.frames_used)
        for key, metric in (("d_l", d_l), ("d_v", d_v), ("d_a", d_a), ("sld", sld), ("slv", slv), ("smd", smd)):
            if key in metrics:
                try:
                    row[key] = float(metric(lm_gen, lm_gt))
                except ValueError:  # too few frames with a face on both sides: undefined for this clip
                    row[key] = math.nan
    if scorers.embedder is not None:
        from stylization.metrics.identity import csim_frames

        result = csim_frames(gen, gt[:1], scorers.embedder)
        row["csim"] = float(result.value)
    if scorers.syncnet is not None:
        import torch

        from stylization.syncnet.evaluate import evaluate

        with torch.no_grad():
            sync = evaluate(scorers.syncnet, gen, wav)
        row.update(lse_d=float(sync["lse_d"]), lse_c=float(sync["lse_c"]), sync_offset=int(sync["offset"]))
    return row


def aggregate(per_clip: dict[str, dict]) -> tuple[dict, dict]:
    """Mean over clips of every metric, and per metric how many clips had it undefined (NaN)."""
    import numpy as np

    keys = sorted({k for row in per_clip.values() for k in row if k not in ("frames", "lmd_frames")})
    means, undefined = {}, {}
    for key in keys:
        values = np.array([row[key] for row in per_clip.values() if key in row], np.float64)
        finite = values[np.isfinite(values)]
        means[key] = round(float(finite.mean()), 6) if len(finite) else None
        if len(finite) < len(values):
            undefined[key] = int(len(values) - len(finite))
    return means, undefined


def run(cfg: DictConfig) -> dict:
    import numpy as np
    from tqdm import tqdm

    from stylization.data.render_inputs import resize
    from stylization.data.video import read_video
    from stylization.errors import ConfigError, DataError
    from stylization.preprocess.decode import decode_audio

    metrics = list(cfg.metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metrics {unknown}; known: {list(METRICS)}")
    if str(cfg.ssim_definition) not in ("vico", "skimage"):
        raise ConfigError(f"ssim_definition must be vico or skimage, got {cfg.ssim_definition!r}")
    gen_videos, gt_videos = videos_by_stem(str(cfg.gen)), videos_by_stem(str(cfg.gt))
    missing = [{"clip": s, "reason": "no generated video", "path": p} for s, p in gt_videos.items() if s not in gen_videos]
    missing += [{"clip": s, "reason": "no ground-truth video", "path": p}
                for s, p in gen_videos.items() if s not in gt_videos]
    scorers = Scorers(cfg, metrics)
    size, per_clip = int(cfg.size), {}
    for stem in tqdm([s for s in gen_videos if s in gt_videos], desc="benchmark", unit="clip"):
        try:
            gen = read_video(gen_videos[stem], fps=float(cfg.fps))
            gt = read_video(gt_videos[stem], fps=float(cfg.fps))
            wav = decode_audio(gt_videos[stem]) if "lse" in metrics else None
        except DataError as exc:
            missing.append({"clip": stem, "reason": str(exc), "path": gen_videos[stem]})
            log.warning("left out %s: %s", stem, exc)
            continue
        n = min(len(gen), len(gt))
        gen = np.stack([resize(f, size) for f in gen[:n]])
        gt = np.stack([resize(f, size) for f in gt[:n]])
        per_clip[stem] = score_clip(gen, gt, wav, metrics, cfg, scorers)
    means, undefined = aggregate(per_clip)
    if "lse_c" in means:
        means["sync_conf"] = means["lse_c"]  # Sync_conf in the papers' tables is SyncNet's LSE-C
    if scorers.inception is not None:
        from stylization.metrics.fid import frechet_distance

        pooled = {side: np.concatenate(f) if f else np.zeros((0, 2048)) for side, f in scorers.fid_features.items()}
        if min(len(p) for p in pooled.values()) >= 2:
            means["fid"] = round(frechet_distance(pooled["gen"], pooled["gt"]), 6)
        else:
            means["fid"], undefined["fid"] = None, len(per_clip)
    result = {"aggregate": means, "undefined": undefined, "per_clip": per_clip, "missing": missing,
              "clips": len(per_clip), "config": OmegaConf.to_container(cfg, resolve=True)}
    out = str(cfg.out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_finite(result), f, indent=1, allow_nan=False)
    os.replace(tmp, out)
    return {**means, "clips": len(per_clip), "missing": len(missing)}


def _finite(obj):
    """NaN and infinity -> None, so the JSON is strict."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


@hydra.main(version_base="1.3", config_path="../configs", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(_finite(run(cfg)))))


if __name__ == "__main__":
    main()
