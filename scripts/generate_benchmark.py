"""Our rows of the papers' tables, generated in the self-driven protocol:
``python scripts/generate_benchmark.py data.root=CORPUS split=test out=DIR [checkpoints=DIR] [max_clips=N]``.

For every clip of the split (each a test video of a processed corpus, docs/benchmark.md):

* ``<out>/gt/<clip>.mp4`` — the ground truth: the clip's art-style target video (the papers' "GT+VT":
  the real video stylised) with the clip's own sound;
* ``<out>/<method>/<clip>.mp4`` — our pipeline (``infer.py``'s code path) driven as the papers drive
  theirs: the clip's first real frame as the identity photo, the clip's audio, its ground-truth
  head pose (``pose=`` its coefficients), its first emotion text for Style-E, and a reference
  picture of its art style for Style-A;
* ``<out>/still/<clip>.mp4`` — the ground truth's first frame held (no motion at all);
* ``<out>/gt_shift/<clip>.mp4`` — the ground truth delayed by ``shift`` frames against its sound
  (what a 0.2 s sync error does to each metric; Sync should drop, LMD rise).

The art style of clip i is ``style`` if set, else the corpus's styles in turn (as
``scripts/eval_render.py``).

``style_reference=speaker`` runs the reference-frame style transfer protocol instead: each speaker's
first clip of the split is its style reference (a talking video: ``infer.py style_frames=`` it, one
transfer per speaker), its other clips are the rows (the first ``rows_per_speaker``); the ground truth is the real video (no art
style), and our row is the clip's first frame animated by its sound in the speaker's style (no
text, no art picture, no pose: the style gives the head motion). Resumable: a clip whose videos all exist is skipped (counted in the
log). Then ``python scripts/benchmark.py gen=<out>/<method> gt=<out>/gt out=...`` scores each row.
"""

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("generate_benchmark")

BASELINES = ("still", "gt_shift")


def clip_styles(corpus, clips, style: str | None) -> list[str]:
    """The art style of each clip: ``style`` for all, else the corpus's styles in turn."""
    from stylization.errors import ConfigError

    names = sorted({k[len("style_"):] for rec in clips for k in rec.files if k.startswith("style_")})
    if style is not None:
        if style not in names:
            raise ConfigError(f"style {style!r} has no target videos in {corpus.root}; it has {names}")
        return [style] * len(clips)
    if not names:
        raise ConfigError(f"{corpus.root} has no art-style target videos (files style_<name>); run the art pass "
                          "of scripts/preprocess.py (art.*) first")
    return [names[i % len(names)] for i in range(len(clips))]


def art_picture(root: str, style: str) -> str:
    """The first reference picture of ``style`` listed in ``<root>/art/index.json``."""
    import json

    from stylization.errors import DataError

    index = os.path.join(root, "art", "index.json")
    try:
        with open(index) as f:
            pictures = json.load(f).get(style) or []
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the art index ({exc})", index) from None
    if not pictures:
        raise DataError(f"lists no reference picture of style {style!r}", index)
    return os.path.join(root, pictures[0])


def run(cfg: DictConfig) -> dict:
    import cv2

    from stylization.data.corpus import Corpus
    from stylization.data.video import delay_frames, read_video, write_video
    from stylization.errors import ConfigError
    from stylization.pipeline import Pipeline, run_batch

    methods = [str(m) for m in cfg.methods]
    unknown = [m for m in methods if m not in (*BASELINES, str(cfg.method))]
    if unknown:
        raise ConfigError(f"unknown methods {unknown}: {cfg.method!r} (our pipeline) and {list(BASELINES)}")
    corpus = Corpus(str(cfg.data.root))
    clips = corpus.clips(str(cfg.split))
    if not clips:
        raise ConfigError(f"{corpus.root} has no {cfg.split!r} clips")
    if cfg.max_clips is not None:
        clips = clips[: int(cfg.max_clips)]
    references = {}
    if cfg.style_reference is not None:
        if str(cfg.style_reference) != "speaker":
            raise ConfigError(f"style_reference must be speaker (each speaker's first clip is its style video) or "
                              f"null, got {cfg.style_reference!r}")
        for rec in clips:
            references.setdefault(rec.speaker, rec)
        rows: dict[str, list] = {}
        for rec in clips:
            if references[rec.speaker] is not rec:
                rows.setdefault(rec.speaker, []).append(rec)
        limit = None if cfg.rows_per_speaker is None else int(cfg.rows_per_speaker)
        clips = [rec for spk in sorted(rows) for rec in rows[spk][:limit]]  # one transfer per speaker, rows in a run
    styles = [None] * len(clips) if references else clip_styles(corpus, clips, cfg.style)
    out = Path(str(cfg.out))
    for name in ("gt", *methods):
        (out / name).mkdir(parents=True, exist_ok=True)
    pipeline = None
    done = skipped = 0
    failures = []
    scratch = tempfile.mkdtemp(prefix="generate_benchmark_")
    try:
        for rec, style in zip(clips, styles):
            targets = {name: out / name / f"{rec.id}.mp4" for name in ("gt", *methods)}
            if all(p.exists() for p in targets.values()):
                skipped += 1
                continue
            wav = corpus.load_audio(rec)
            gt = read_video(corpus.path(rec, "video" if references else f"style_{style}"))
            write_video(targets["gt"], gt, audio=wav)
            if "still" in methods:
                write_video(targets["still"], gt[:1].repeat(len(gt), 0), audio=wav)
            if "gt_shift" in methods:
                write_video(targets["gt_shift"], delay_frames(gt, int(cfg.shift)), audio=wav)
            if str(cfg.method) in methods and not targets[str(cfg.method)].exists():
                photo = os.path.join(scratch, f"{rec.id}.png")
                cv2.imwrite(photo, cv2.cvtColor(read_video(corpus.path(rec, "video"), max_frames=1)[0], cv2.COLOR_RGB2BGR))
                if pipeline is None:
                    from stylization.engine.distributed import resolve_device

                    pipeline = Pipeline(cfg, resolve_device(str(cfg.device)))
                if references:
                    row = {"image": photo, "audio": corpus.path(rec, "audio"), "out": str(targets[str(cfg.method)]),
                           "style_frames": corpus.path(references[rec.speaker], "video"), "seed": int(cfg.seed)}
                else:
                    row = {"image": photo, "audio": corpus.path(rec, "audio"), "out": str(targets[str(cfg.method)]),
                           "text": rec.texts[int(cfg.text_index) % len(rec.texts)] if rec.texts else None,
                           "art": art_picture(corpus.root, style), "pose": corpus.path(rec, "coeffs"),
                           "seed": int(cfg.seed)}
                _, failed = run_batch(pipeline, [row], {})
                failures += [f"{rec.id}: {f.split(': ', 1)[-1]}" for f in failed]
            done += 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if skipped:
        log.info("skipped %d clips whose videos all exist (resuming)", skipped)
    for line in failures:
        log.error("not generated: %s", line)
    return {"clips": len(clips), "generated": done, "skipped": skipped, "failed": len(failures), "out": str(out)}


@hydra.main(version_base="1.3", config_path="../configs", config_name="generate_benchmark")
def main(cfg: DictConfig) -> None:
    import json

    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(run(cfg))))


if __name__ == "__main__":
    main()
