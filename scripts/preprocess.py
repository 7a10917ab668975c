"""Raw MEAD / HDTF / a folder of videos -> a processed-clip corpus:
``python scripts/preprocess.py dataset=mead raw=DIR out=DIR [workers=N] [shard=I/N] [splits=FILE]``.

Options: configs/preprocess.yaml. Resumable (finished clips are skipped, failed ones too unless
``retry_failed=true``); writes OUT/index.jsonl and OUT/failures.jsonl and prints, last, one JSON
object: ``clips``, ``failed``, ``frames``, ``seconds`` and more (this run's counts, skip reasons).
"""

import json
import logging
import os
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("preprocess")


def run(cfg: DictConfig) -> None:
    from stylization.errors import ConfigError
    from stylization.preprocess.runner import ProcessOptions, merge, preprocess, text_ranker
    from stylization.preprocess.sources import discover, mead_clips, parse_shard, shard

    started = time.monotonic()
    dataset, out = str(cfg.dataset), str(cfg.out)
    if dataset not in ("mead", "hdtf", "folder"):
        raise ConfigError(f"dataset must be mead, hdtf or folder, got {dataset!r}")
    os.makedirs(out, exist_ok=True)
    summary: dict = {}
    if not cfg.merge_only:
        if dataset == "mead" and str(cfg.view) != "front":
            clips, missing = mead_clips(str(cfg.raw), str(cfg.view)), []
        else:
            clips, missing = discover(dataset, str(cfg.raw))
        for clip_id, reason in missing:
            log.warning("skipped %s: %s", clip_id, reason)
        index, count = parse_shard(str(cfg.shard)) if cfg.shard else (0, 1)
        clips = shard(clips, index, count)
        backend = str(cfg.coeffs_backend)
        if backend == "auto":
            files = [str(cfg.deep3d_recon), os.path.join(str(cfg.bfm_folder), "similarity_Lm3D_all.mat")]
            absent = [f for f in files if not os.path.isfile(f)]
            backend = "fit" if absent else "deep3d"
            if absent:
                log.warning("Deep3DFaceRecon files missing (%s): coefficients come from the landmark fit "
                            "(coeffs_backend=fit, face model %s)", ", ".join(absent), cfg.face_model)
        options = ProcessOptions(size=int(cfg.size), detector=str(cfg.detector), detect_side=int(cfg.detect_side),
                                 detect_every=int(cfg.detect_every), max_lost=int(cfg.max_lost), smooth=int(cfg.smooth),
                                 coeffs_backend=backend, face_model=str(cfg.face_model),
                                 deep3d_recon=str(cfg.deep3d_recon), bfm_folder=str(cfg.bfm_folder),
                                 device=str(cfg.device))
        log.info("%s: %d clips in shard %d/%d", dataset, len(clips), index, count)
        summary = preprocess(clips, out, options, workers=int(cfg.workers), retry_failed=bool(cfg.retry_failed),
                             shard_tag=f"{index}of{count}")
        summary["missing_videos"] = len(missing)
    ranker = text_ranker(cfg.clip_model, cfg.clip_pretrained, str(cfg.device))
    totals = merge(out, dataset, str(cfg.splits) if cfg.splits else None, int(cfg.texts_per_clip), int(cfg.seed),
                   ranker)
    print(json.dumps({**totals, **summary, "seconds": round(time.monotonic() - started, 1)}))


@hydra.main(version_base="1.3", config_path="../configs", config_name="preprocess")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: run(cfg))


if __name__ == "__main__":
    main()
