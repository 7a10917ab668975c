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
    if cfg.paraphrase_model is not None:  # checked before hours of clips, loaded only for the merge
        from stylization.loading import transformers_lm_kind

        if cfg.clip_model is None:
            raise ConfigError(f"paraphrase_model={cfg.paraphrase_model}: the rewordings are kept only through the "
                              "CLIP ranking; set clip_model (e.g. ViT-B-32) or paraphrase_model=null")
        transformers_lm_kind(str(cfg.paraphrase_model))
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
                                 deep3d_batch=int(cfg.deep3d_batch),
                                 device=str(cfg.device), phonemes=bool(cfg.phonemes))
        log.info("%s: %d clips in shard %d/%d", dataset, len(clips), index, count)
        summary = preprocess(clips, out, options, workers=int(cfg.workers), retry_failed=bool(cfg.retry_failed),
                             shard_tag=f"{index}of{count}")
        summary["missing_videos"] = len(missing)
        summary.update(art_targets(cfg, out, [clip.id for clip in clips]))
    ranker = text_ranker(cfg.clip_model, cfg.clip_pretrained, str(cfg.device))
    paraphraser = None
    if cfg.paraphrase_model is not None:
        from stylization.preprocess.paraphrase import load_paraphraser

        if ranker is None:
            log.warning("emotion texts are not paraphrased: no CLIP ranking to choose among the rewordings")
        else:
            paraphraser = load_paraphraser(str(cfg.paraphrase_model), int(cfg.paraphrases_per_text), str(cfg.device),
                                           int(cfg.paraphrase_batch_size))
    totals = merge(out, dataset, str(cfg.splits) if cfg.splits else None, int(cfg.texts_per_clip), int(cfg.seed),
                   ranker, paraphraser)
    print(json.dumps({**totals, **summary, "seconds": round(time.monotonic() - started, 1)}))


def art_targets(cfg: DictConfig, out: str, clip_ids: list[str]) -> dict:
    """The art-style pass (configs/preprocess.yaml ``art``) over this shard's finished clips, and
    ``out/art/index.json``. Returns its counts (``art_videos``, ...; none when it is off)."""
    import torch
    from hydra.utils import instantiate

    from stylization.data.render_inputs import RenderInputs
    from stylization.errors import ConfigError
    from stylization.loading import load_exstyle_codes, load_official
    from stylization.preprocess.art_targets import (ArtTargetOptions, ArtTargets, copy_art_pictures, style_name,
                                                    write_art_index)
    from stylization.preprocess.runner import clip_dir_name
    from stylization.style_a.teacher import ArtTeacher

    a, m = cfg.art, cfg.model
    counts: dict = {}
    if a.pictures:
        counts["art_pictures_copied"] = copy_art_pictures(str(a.pictures), out)
    mode = str(a.targets).lower()
    if mode not in ("auto", "true", "false"):
        raise ConfigError(f"art.targets must be auto, true or false, got {a.targets!r}")
    if mode != "false":
        needed = {"art.vtoonify": a.vtoonify, "art.exstyle_codes": a.exstyle_codes, "art.psp": a.psp}
        if m.parsing == "bisenet":
            needed["art.bisenet"] = a.bisenet
        absent = [f"{k}={v}" for k, v in needed.items() if not v or not os.path.isfile(str(v))]
        if absent and mode == "true":
            raise ConfigError(f"art.targets=true but these files are missing: {', '.join(absent)}")
        if absent:
            log.warning("no art-style targets (VToonify-D files missing: %s); Style-A can still train on this "
                        "corpus with stage.targets=teacher and art pictures (art.pictures=DIR)", ", ".join(absent))
        else:
            torch.manual_seed(0)
            vtoonify = load_official("vtoonify_d", str(a.vtoonify), instantiate(m.teacher))
            psp = load_official("psp_encoder", str(a.psp), instantiate(m.psp))
            parser = load_official("bisenet", str(a.bisenet), instantiate(m.bisenet)) if m.parsing == "bisenet" else None
            teacher = ArtTeacher(vtoonify, psp, parser, float(a.degree), int(a.art_layers)).eval()
            entries = load_exstyle_codes(str(a.exstyle_codes), int(m.generator.style_dim))
            keys = list(a.styles) if a.styles else sorted(entries)
            unknown = [k for k in keys if k not in entries]
            if unknown:
                raise ConfigError(f"art.styles {unknown} are not in {a.exstyle_codes} (it has {sorted(entries)[:5]} ...)")
            codes = {style_name(k): teacher.art_code(torch.from_numpy(entries[k])) for k in keys}
            inputs = RenderInputs(content_size=int(vtoonify.in_size), code_size=int(m.psp.input_size),
                                  identity_alignment=str(m.identity_alignment),
                                  parsing="landmarks" if m.parsing == "landmarks" else "none")
            options = ArtTargetOptions(per_clip=int(a.per_clip), seed=int(cfg.seed), batch_size=int(a.batch_size),
                                       references=int(a.references), device=str(cfg.device))
            names = [clip_dir_name(i) for i in clip_ids]
            names = [n for n in names if os.path.isfile(os.path.join(out, "clips", n, "record.json"))]
            counts.update(ArtTargets(teacher, inputs, codes, options).run(out, names))
    counts["art_styles"] = len(write_art_index(out))
    return counts


@hydra.main(version_base="1.3", config_path="../configs", config_name="preprocess")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: run(cfg))


if __name__ == "__main__":
    main()
