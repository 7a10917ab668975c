"""Evaluate Style-E on a corpus split: ``python scripts/eval_motion.py run=RUN data.root=DIR split=test``.

For every clip of the split, expression coefficients are generated from the clip's audio,
a source expression (a frame of the same speaker's neutral clip) and one of the clip's
texts, for the whole clip (long-audio windows). Landmarks of the stand-in / BFM face model
with the true identity and pose are compared with the truth, in pixels of a 256 frame:

* ``m_lmd``, ``f_lmd`` — the model;
* ``still_*`` — the source expression held still;
* ``audio2exp_*`` — Audio2Exp alone, without diffusion or text;
* ``wrong_text_f_lmd`` — the model given a text of another emotion (must be worse).

The last line printed is one JSON object with those keys (frame-weighted means).
"""

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def evaluate(cfg: DictConfig) -> dict:
    import torch
    from tqdm import tqdm

    from stylization.constants import COEFF_SLICES
    from stylization.data.corpus import MEAD_EMOTIONS, Corpus
    from stylization.data.face_model import build_face_model
    from stylization.engine.distributed import resolve_device
    from stylization.errors import DataError
    from stylization.metrics.landmarks import expression_landmark_errors
    from stylization.runs import STYLE_E_HINT, load_run, style_e_from_run
    from stylization.style_e.generate import mel_windows_tensor

    device = resolve_device(str(cfg.device))
    run = load_run(str(cfg.run), use_ema=bool(cfg.use_ema), hint=STYLE_E_HINT)
    model = style_e_from_run(run, sampler=cfg.sampler, steps=cfg.steps).to(device)
    face_model = build_face_model(str(cfg.data.face_model))
    corpus = Corpus(str(cfg.data.root))
    clips = corpus.clips(str(cfg.split))
    if not clips:
        raise DataError(f"split {cfg.split!r} has no clips", corpus.root)
    if cfg.max_clips is not None:
        clips = clips[: int(cfg.max_clips)]
    # a text of a different emotion for every emotion: the next one in MEAD's order that the corpus has
    texts_by_emotion = {r.emotion: r.texts[0] for r in corpus.records if r.texts}
    present = [e for e in MEAD_EMOTIONS if e in texts_by_emotion]
    wrong = {e: texts_by_emotion[present[(present.index(e) + 1) % len(present)]] for e in present}

    sums: dict[str, float] = {}
    frames = 0
    for rec in tqdm(clips, desc="clips"):
        coeffs = torch.from_numpy(corpus.load_coeffs(rec)).to(device)
        mel = mel_windows_tensor(corpus.load_audio(rec))[: rec.n_frames].to(device)
        neutral = [r for r in corpus.clips(speakers=[rec.speaker]) if r.emotion == "neutral" and r.id != rec.id]
        src = neutral[0] if neutral else rec
        src_exp = torch.from_numpy(corpus.load_coeffs(src)[src.n_frames // 2, COEFF_SLICES["exp"]]).to(device)
        n = min(len(mel), rec.n_frames)
        coeffs, mel = coeffs[:n], mel[:n]
        text = rec.texts[0] if rec.texts else None
        preds = {
            "": model.generate(mel, src_exp, text, float(cfg.guidance), int(cfg.seed)),
            "still_": src_exp[None].expand(n, -1),
            "audio2exp_": model.audio_expression(mel, src_exp),
        }
        if model.text_encoder is not None and rec.emotion in wrong:
            preds["wrong_text_"] = model.generate(mel, src_exp, wrong[rec.emotion], float(cfg.guidance), int(cfg.seed))
        for prefix, exp in preds.items():
            for key, value in expression_landmark_errors(face_model, coeffs, exp.float()).items():
                sums[prefix + key] = sums.get(prefix + key, 0.0) + float(value) * n
        frames += n
    result = {k: round(v / frames, 4) for k, v in sorted(sums.items())}
    result.pop("wrong_text_m_lmd", None)
    result.update(clips=len(clips), frames=frames)
    return result


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval_motion")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(evaluate(cfg))))


if __name__ == "__main__":
    main()
