"""A corpus clip's coefficients -> a 3DMM .mat for StyleTalk, DreamTalk, PIRenderer or SadTalker:
``python scripts/export_mat.py clip=DIR/clips/ID out=FILE.mat [fps=30]``.

Options: configs/export_mat.yaml. Writes ``coeff`` [T, 257], ``transform_params`` [T, 5],
``coeff_3dmm`` [T, 73] and ``full_3dmm`` [T, 257] at ``fps`` (the clip's 25 fps rows resampled),
atomically (and, for a clip with ``phonemes.npy``, StyleTalk's ``<out>_seq.json`` beside it), and
prints one JSON object: ``out``, ``frames``, ``fps`` (and ``phonemes``). Bad input ends with one
``error:`` line naming the file and a non-zero exit.
"""

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VERBATIM_KEYS = ("clip", "out")


def run(cfg: DictConfig) -> None:
    from stylization.errors import ConfigError
    from stylization.preprocess.mat_clips import export_clip

    try:
        fps = float(cfg.fps)
    except (TypeError, ValueError):
        raise ConfigError(f"fps={cfg.fps!r} is not a number") from None
    print(json.dumps(export_clip(str(cfg.clip), str(cfg.out), fps)))


@hydra.main(version_base="1.3", config_path="../configs", config_name="export_mat")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: run(cfg))


if __name__ == "__main__":
    from stylization.cli import free_text_argv

    sys.argv = free_text_argv(sys.argv, VERBATIM_KEYS)  # before Hydra's parser sees commas
    main()
