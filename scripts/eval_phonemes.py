"""How well does the phone recogniser (no transcript) find the phonemes of a clip?
``python scripts/eval_phonemes.py data.root=DIR split=test [max_clips=N]``.

The reference is each clip's stored ``phonemes.npy`` (the synthetic corpus: its known sentence
force-aligned to its sound, :mod:`stylization.data.phonemes`); the recogniser is
:meth:`~stylization.data.phonemes.PhonemeRecognizer.recognize` on the clip's sound. Prints, last,
one JSON object: ``frame_accuracy`` (frames with the same label), ``speech_frame_accuracy`` (the
same over frames the reference labels as speech), ``silence_recall`` (reference silence found as
silence), ``clips``, ``frames`` and ``seconds_per_audio_second`` (the recogniser's speed).
"""

import json
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(cfg: DictConfig) -> dict:
    import numpy as np
    from tqdm import tqdm

    from stylization.constants import SAMPLE_RATE
    from stylization.data.corpus import Corpus
    from stylization.data.phonemes import SIL, PhonemeRecognizer
    from stylization.errors import ConfigError

    corpus = Corpus(cfg.data.root)
    clips = [r for r in corpus.clips(str(cfg.split)) if "phonemes" in r.files]
    if cfg.max_clips is not None:
        clips = clips[: int(cfg.max_clips)]
    if not clips:
        raise ConfigError(f"no {cfg.split!r} clip of {corpus.root} has a phonemes file (files['phonemes'])")
    recognizer = PhonemeRecognizer()
    reference, found, seconds, took = [], [], 0.0, 0.0
    for rec in tqdm(clips, desc="eval_phonemes", unit="clip"):
        wav = corpus.load_audio(rec)
        start = time.perf_counter()
        found.append(recognizer.recognize(wav, rec.n_frames))
        took += time.perf_counter() - start
        reference.append(corpus.load_phonemes(rec))
        seconds += len(wav) / SAMPLE_RATE
    ref, got = np.concatenate(reference), np.concatenate(found)
    speech = ref != SIL
    return {"clips": len(clips), "frames": int(len(ref)), "frame_accuracy": round(float((ref == got).mean()), 4),
            "speech_frame_accuracy": round(float((ref == got)[speech].mean()), 4),
            "silence_recall": round(float((got[~speech] == SIL).mean()), 4),
            "seconds_per_audio_second": round(took / seconds, 4)}


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval_phonemes")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(run(cfg))))


if __name__ == "__main__":
    main()
