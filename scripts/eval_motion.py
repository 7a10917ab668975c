"""Evaluate a motion model on a corpus split: ``python scripts/eval_motion.py run=RUN data.root=DIR split=test``.

RUN is a Style-E (``style_e``, ``style_e_cgan``), StyleTalk (``styletalk``) or SAAS (``saas``, ``saas_edit``) run. For every clip
of the split the model generates the clip's expressions for the whole clip; landmarks of the
stand-in / BFM face model with the true identity and pose are compared with the truth, in pixels of
a 256 frame (M-LMD: the 20 mouth points, F-LMD: all 68):

* ``m_lmd``, ``f_lmd`` — the model;
* ``still_*`` — the source expression held still (a frame of the same speaker's neutral clip);
* Style-E: ``audio2exp_*`` — Audio2Exp alone, without diffusion or text; ``wrong_text_f_lmd`` — the
  model given a text of another emotion (must be worse);
* StyleTalk, driven by the clip's phonemes (its ``phonemes`` file; recognised from the sound where
  it has none, or always with ``phonemes=recognize``) and a style clip: another clip of the same
  speaker and emotion. ``audio_only_*`` — the same phonemes with the mean style code of the
  split's style clips (the style of nobody in particular); ``wrong_style_f_lmd`` — a style clip of
  the same speaker in another emotion (must be worse);
* SAAS, driven by the clip's sound, the source expression and a style clip (another clip of the same
  speaker and emotion): ``audio_only_*`` and ``wrong_style_f_lmd`` as for StyleTalk;
* SAAS video-driven editing (``saas_edit``): the clip's own performance (its true expressions)
  restyled with those style clips: ``m_lmd`` / ``f_lmd`` measure how well a performance in its own
  style survives the edit, ``wrong_style_f_lmd`` how far another emotion's style moves it, and
  ``audio_only_*`` (here: the mean style code) as for StyleTalk.

The last line printed is one JSON object with those keys (frame-weighted means).
"""

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _next_emotion(present: list[str]) -> dict[str, str]:
    """For every emotion, the next one in MEAD's order that the corpus has (the "wrong" condition)."""
    return {e: present[(present.index(e) + 1) % len(present)] for e in present}


def _source_expression(corpus, rec):
    """A frame's expression from the speaker's neutral clip (another clip; the clip itself when it has none): [64]."""
    from stylization.constants import COEFF_SLICES

    neutral = [r for r in corpus.clips(speakers=[rec.speaker]) if r.emotion == "neutral" and r.id != rec.id]
    src = neutral[0] if neutral else rec
    return corpus.load_coeffs(src)[src.n_frames // 2, COEFF_SLICES["exp"]]


def style_e_predictions(cfg, run, corpus, clips, device):
    """A function: clip -> {prefix: expressions [T, 64]} for a Style-E run (see the module docstring)."""
    import torch

    from stylization.data.corpus import MEAD_EMOTIONS
    from stylization.runs import style_e_from_run
    from stylization.style_e.generate import mel_windows_tensor

    model = style_e_from_run(run, sampler=cfg.sampler, steps=cfg.steps).to(device)
    texts_by_emotion = {r.emotion: r.texts[0] for r in corpus.records if r.texts}
    nxt = _next_emotion([e for e in MEAD_EMOTIONS if e in texts_by_emotion])
    wrong = {e: texts_by_emotion[w] for e, w in nxt.items()}

    def predict(rec, n):
        mel = mel_windows_tensor(corpus.load_audio(rec))[:n].to(device)
        src_exp = torch.from_numpy(_source_expression(corpus, rec)).to(device)
        text = rec.texts[0] if rec.texts else None
        preds = {"": model.generate(mel, src_exp, text, float(cfg.guidance), int(cfg.seed)),
                 "still_": src_exp[None].expand(n, -1), "audio2exp_": model.audio_expression(mel, src_exp)}
        if model.text_encoder is not None and rec.emotion in wrong:
            preds["wrong_text_"] = model.generate(mel, src_exp, wrong[rec.emotion], float(cfg.guidance), int(cfg.seed))
        return preds

    return predict


class StyleClips:
    """The style clips of a split for a clip-driven model: ``code(rec)`` (cached), the style clip of a
    clip (another clip of its speaker and emotion), its wrong-style clip (the speaker in the next emotion
    of MEAD's order) and the mean code of the split's style clips (the "audio only" condition)."""

    def __init__(self, corpus, split: str, clips, style_code):
        import torch

        from stylization.constants import COEFF_SLICES
        from stylization.data.corpus import MEAD_EMOTIONS

        self.corpus, self.style_code, self.exp = corpus, style_code, COEFF_SLICES["exp"]
        self.by_style, self.codes = {}, {}
        for r in corpus.clips(split):
            self.by_style.setdefault((r.speaker, r.emotion), []).append(r)
        self.next = _next_emotion([e for e in MEAD_EMOTIONS if any(s[1] == e for s in self.by_style)])
        self.mean_code = torch.cat([self.code(self.clip(r, r.emotion)) for r in clips]).mean(0, keepdim=True)

    def code(self, rec):
        if rec.id not in self.codes:
            self.codes[rec.id] = self.style_code(self.corpus.load_coeffs(rec)[:, self.exp])
        return self.codes[rec.id]

    def clip(self, rec, emotion):
        same = self.by_style.get((rec.speaker, emotion), [])
        return ([r for r in same if r.id != rec.id] or same or [None])[0]

    def predictions(self, rec, n: int, generate, device) -> dict:
        """{"": own style, "still_", "audio_only_", "wrong_style_"} from ``generate(code)`` -> [T, 64]."""
        import torch

        src_exp = torch.from_numpy(_source_expression(self.corpus, rec)).to(device)
        preds = {"": generate(self.code(self.clip(rec, rec.emotion))), "audio_only_": generate(self.mean_code)}
        preds["still_"] = src_exp[None].expand(len(preds[""]), -1)
        wrong = self.clip(rec, self.next.get(rec.emotion, rec.emotion))
        if wrong is not None and wrong.emotion != rec.emotion:
            preds["wrong_style_"] = generate(self.code(wrong))
        return preds


def styletalk_predictions(cfg, run, corpus, clips, device):
    """A function: clip -> {prefix: expressions [T, 64]} for a StyleTalk run (see the module docstring)."""
    from stylization.data.phonemes import PhonemeRecognizer
    from stylization.errors import ConfigError
    from stylization.runs import styletalk_from_run

    if str(cfg.phonemes) not in ("auto", "recognize"):
        raise ConfigError(f"phonemes={cfg.phonemes}: use auto (the clip's phonemes file, else recognised) or recognize")
    model = styletalk_from_run(run).to(device)
    styles = StyleClips(corpus, str(cfg.split), clips, model.style_code)
    recognizer = None

    def predict(rec, n):
        nonlocal recognizer
        if cfg.phonemes == "auto" and "phonemes" in rec.files:
            labels = corpus.load_phonemes(rec)[:n]
        else:
            recognizer = recognizer or PhonemeRecognizer()
            labels = recognizer.recognize(corpus.load_audio(rec), n)
        return styles.predictions(rec, n, lambda code: model.generate(labels, code), device)

    return predict


def saas_predictions(cfg, run, corpus, clips, device):
    """A function: clip -> {prefix: expressions [T, 64]} for a SAAS run (see the module docstring)."""
    import torch

    from stylization.runs import saas_from_run
    from stylization.style_e.generate import mel_windows_tensor

    model = saas_from_run(run).to(device)
    styles = StyleClips(corpus, str(cfg.split), clips, model.style_code)

    def predict(rec, n):
        mel = mel_windows_tensor(corpus.load_audio(rec))[:n].to(device)
        src_exp = torch.from_numpy(_source_expression(corpus, rec)).to(device)
        return styles.predictions(rec, n, lambda code: model.generate(mel, src_exp, code), device)

    return predict


def saas_edit_predictions(cfg, run, corpus, clips, device):
    """A function: clip -> {prefix: expressions [T, 64]} for a saas_edit run: the clip's own performance
    (its true expressions) restyled with a style clip (see the module docstring)."""
    import torch

    from stylization.constants import COEFF_SLICES
    from stylization.runs import saas_from_run

    model = saas_from_run(run, "saas_edit").to(device)
    styles = StyleClips(corpus, str(cfg.split), clips, model.style_code)

    def predict(rec, n):
        exp = torch.from_numpy(corpus.load_coeffs(rec)[:n, COEFF_SLICES["exp"]]).to(device)
        return styles.predictions(rec, n, lambda code: model.edit(exp, code), device)

    return predict


def evaluate(cfg: DictConfig) -> dict:
    import torch
    from tqdm import tqdm

    from stylization.data.corpus import Corpus
    from stylization.data.face_model import build_face_model
    from stylization.engine.distributed import resolve_device
    from stylization.errors import DataError
    from stylization.metrics.landmarks import expression_landmark_errors
    from stylization.runs import load_run

    device = resolve_device(str(cfg.device))
    run = load_run(str(cfg.run), use_ema=bool(cfg.use_ema),
                   hint="train one with: python train.py stage=style_e|styletalk|saas|saas_edit data.root=DIR")
    face_model = build_face_model(str(cfg.data.face_model))
    corpus = Corpus(str(cfg.data.root))
    clips = corpus.clips(str(cfg.split))
    if not clips:
        raise DataError(f"split {cfg.split!r} has no clips", corpus.root)
    if cfg.max_clips is not None:
        clips = clips[: int(cfg.max_clips)]
    factory = {"styletalk": styletalk_predictions, "saas": saas_predictions,
               "saas_edit": saas_edit_predictions}.get(run.stage, style_e_predictions)
    predict = factory(cfg, run, corpus, clips, device)

    sums: dict[str, float] = {}
    frames = 0
    for rec in tqdm(clips, desc="clips"):
        coeffs = torch.from_numpy(corpus.load_coeffs(rec)).to(device)
        n = rec.n_frames
        preds = predict(rec, n)
        n = min(n, *(len(p) for p in preds.values()))
        for prefix, exp in preds.items():
            for key, value in expression_landmark_errors(face_model, coeffs[:n], exp[:n].float()).items():
                sums[prefix + key] = sums.get(prefix + key, 0.0) + float(value) * n
        frames += n
    result = {k: round(v / frames, 4) for k, v in sorted(sums.items())}
    for key in ("wrong_text_m_lmd", "wrong_style_m_lmd"):
        result.pop(key, None)
    result.update(clips=len(clips), frames=frames)
    return result


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval_motion")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(evaluate(cfg))))


if __name__ == "__main__":
    main()
