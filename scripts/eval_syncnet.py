"""Does a SyncNet tell sync from a planted offset on held-out clips?
``python scripts/eval_syncnet.py syncnet=RUN data.root=DIR split=test [shift=5]``.

For every clip of the split, twice: as it is (in sync), and with its video delayed by ``shift``
frames against its sound (the first frame held ``shift`` times, the same length; the
``gt_shift`` baseline of ``scripts/generate_benchmark.py``). Each copy goes through the
benchmark's own :func:`stylization.syncnet.evaluate.embed_clip` and offset search
(±``vshift``). Prints, last, one JSON object:

* ``ranked``: the fraction of clips whose in-sync copy is nearer at offset 0 (mean distance between
  video window i and audio window i) than its shifted copy: the SyncNet scores sync above a 0.2 s
  error;
* ``offset_found``: the fraction of shifted copies whose AV offset is exactly ``+shift`` (a video
  that lags scores positive, :mod:`stylization.metrics.sync`), ``offset_found_1`` within ±1;
* ``in_sync_offset_zero``: the fraction of in-sync copies whose offset is 0 (``..._1`` within ±1);
* ``lse_d``, ``lse_c`` and ``distance_0`` means of each copy, and ``clips``.
"""

import json
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("eval_syncnet")


def run(cfg: DictConfig) -> dict:
    import numpy as np
    import torch
    from tqdm import tqdm

    from stylization.data.corpus import Corpus
    from stylization.data.video import delay_frames, read_video
    from stylization.engine.distributed import resolve_device
    from stylization.errors import ConfigError
    from stylization.metrics.sync import offset_distances, sync_scores
    from stylization.runs import load_syncnet
    from stylization.syncnet.evaluate import embed_clip, window_count

    shift, vshift = int(cfg.shift), int(cfg.vshift)
    if not 0 < shift <= vshift:
        raise ConfigError(f"shift must be in 1..vshift ({vshift}) frames, got {shift}")
    device = resolve_device(str(cfg.device))
    net = load_syncnet(str(cfg.syncnet)).to(device).eval()
    corpus = Corpus(str(cfg.data.root))
    clips = corpus.clips(str(cfg.split))
    if cfg.max_clips is not None:
        clips = clips[: int(cfg.max_clips)]
    rows, skipped = [], 0
    for rec in tqdm(clips, desc="eval_syncnet", unit="clip"):
        frames, wav = read_video(corpus.path(rec, "video")), corpus.load_audio(rec)
        if window_count(len(frames), len(wav)) < 2 * shift:
            skipped += 1
            continue
        row = {}
        delayed = delay_frames(frames, shift)
        for name, video in (("sync", frames), ("shifted", delayed)):
            with torch.no_grad():
                v, a = embed_clip(net, video, wav)
            curve = offset_distances(v, a, vshift)
            scores = sync_scores(curve, vshift)
            row[name] = {"lse_d": float(scores["lse_d"]), "lse_c": float(scores["lse_c"]),
                         "offset": int(scores["offset"]), "distance_0": float(curve[:, vshift].mean())}
        rows.append(row)
    if skipped:
        log.warning("left out %d clips shorter than %d SyncNet windows", skipped, 2 * shift)
    if not rows:
        raise ConfigError(f"no {cfg.split!r} clip of {corpus.root} is long enough to evaluate")

    def frac(test) -> float:
        return round(float(np.mean([test(r) for r in rows])), 4)

    def mean(copy: str, key: str) -> float:
        return round(float(np.mean([r[copy][key] for r in rows])), 4)

    return {"clips": len(rows), "skipped": skipped, "shift": shift,
            "ranked": frac(lambda r: r["sync"]["distance_0"] < r["shifted"]["distance_0"]),
            "offset_found": frac(lambda r: r["shifted"]["offset"] == shift),
            "offset_found_1": frac(lambda r: abs(r["shifted"]["offset"] - shift) <= 1),
            "in_sync_offset_zero": frac(lambda r: r["sync"]["offset"] == 0),
            "in_sync_offset_zero_1": frac(lambda r: abs(r["sync"]["offset"]) <= 1),
            **{f"{copy}_{key}": mean(copy, key) for copy in ("sync", "shifted")
               for key in ("lse_d", "lse_c", "distance_0")}}


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval_syncnet")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(run(cfg))))


if __name__ == "__main__":
    main()
