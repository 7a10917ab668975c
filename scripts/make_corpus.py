"""Build the synthetic MEAD-like corpus: ``python scripts/make_corpus.py out=DIR [key=value ...]``.

Options (configs/corpus.yaml): speakers, clips, seconds, resolution, seed, workers,
test_speakers, emotions, levels, styles, texts_per_clip, phonemes, art_references, video_crf,
overwrite. Writes DIR/index.jsonl, the clips, art references, DIR/preview.png and
DIR/preview.mp4, and prints a one-line JSON summary.
"""

import json
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make(cfg: DictConfig) -> None:
    from stylization.data.synthetic.build import CorpusSpec, build_corpus

    options = OmegaConf.to_container(cfg, resolve=True)
    for key in ("emotions", "levels", "styles"):
        options[key] = tuple(options[key])
    started = time.monotonic()
    records = build_corpus(CorpusSpec(**options))
    splits = {s: sum(r.split == s for r in records) for s in sorted({r.split for r in records})}
    print(json.dumps({"out": str(cfg.out), "clips": len(records), "splits": splits,
                      "frames": sum(r.n_frames for r in records), "seconds": round(time.monotonic() - started, 1)}))


@hydra.main(version_base="1.3", config_path="../configs", config_name="corpus")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: make(cfg))


if __name__ == "__main__":
    main()
