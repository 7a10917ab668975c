"""Evaluate SAAS's poses from speech: ``python scripts/eval_pose.py run=POSE_RUN data.root=DIR split=test``.

For every clip of the split, a ``saas_pose`` run generates the clip's head poses ``samples`` times
(seeds 0, 1, ...) from its sound, in the style of the clip's own expressions, starting from its first
frame's pose. Printed last, one JSON object (means over clips, and over samples where there are
several; :mod:`stylization.metrics.pose`):

* ``pose_diversity_deg`` — std across the samples of the same clip (degrees; > 0: the poses are sampled,
  not fixed);
* ``pose_motion_deg`` / ``real_pose_motion_deg`` — how much the head moves (std over time), generated / true;
* ``speed_energy_corr`` / ``real_speed_energy_corr`` — Pearson's r of head speed and speech energy per
  frame (rhythm), generated / true;
* ``clips``, ``frames``.
"""

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def evaluate(cfg: DictConfig) -> dict:
    import numpy as np
    from tqdm import tqdm

    from stylization.constants import COEFF_SLICES
    from stylization.data.corpus import Corpus
    from stylization.engine.distributed import resolve_device
    from stylization.errors import ConfigError, DataError
    from stylization.metrics.pose import diversity_deg, motion_deg, speed_energy_correlation
    from stylization.runs import load_saas_pose

    if int(cfg.samples) < 1:
        raise ConfigError(f"samples must be >= 1, got {cfg.samples}")
    device = resolve_device(str(cfg.device))
    model = load_saas_pose(str(cfg.run)).to(device)
    corpus = Corpus(str(cfg.data.root))
    clips = corpus.clips(str(cfg.split))
    if cfg.max_clips is not None:
        clips = clips[: int(cfg.max_clips)]
    if not clips:
        raise DataError(f"split {cfg.split!r} has no clips", corpus.root)
    rows: dict[str, list[float]] = {}
    frames = 0
    for rec in tqdm(clips, desc="clips"):
        coeffs, wav = corpus.load_coeffs(rec), corpus.load_audio(rec)
        truth = np.concatenate([coeffs[:, COEFF_SLICES["angle"]], coeffs[:, COEFF_SLICES["trans"]]], 1)
        code = model.style_code(coeffs[:, COEFF_SLICES["exp"]])
        samples = np.stack([model.generate(wav, rec.n_frames, code, truth[0], float(cfg.top_p), float(cfg.temperature),
                                           seed) for seed in range(int(cfg.samples))])
        values = {"pose_motion_deg": np.mean([motion_deg(s) for s in samples]),
                  "speed_energy_corr": np.nanmean([speed_energy_correlation(s, wav) for s in samples]),
                  "real_pose_motion_deg": motion_deg(truth),
                  "real_speed_energy_corr": speed_energy_correlation(truth, wav)}
        if len(samples) > 1:
            values["pose_diversity_deg"] = diversity_deg(samples)
        for k, v in values.items():
            rows.setdefault(k, []).append(float(v))
        frames += rec.n_frames
    result = {k: round(float(np.nanmean(v)), 4) for k, v in sorted(rows.items())}
    result.update(clips=len(clips), frames=frames)
    return result


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval_pose")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(evaluate(cfg))))


if __name__ == "__main__":
    main()
