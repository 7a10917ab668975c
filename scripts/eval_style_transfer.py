"""Does style transfer move the motion towards a character's style? ``python scripts/eval_style_transfer.py
run=MOTION_RUN data.root=CORPUS [split=test] [transfer.steps=N]``.

For every speaker of the split (held-out characters): its clips are split in two, in index order. The
first half are the **references**: their landmarks are the style (φ_s: the corpus's fitted keypoints,
what the face step computes from the frames) and their sound the audio stream of the transfer. With
``paired=true`` (default) they are a talking video: L_mg is the generator's loss on them; with
``paired=false`` only a set of frames plus an audio stream: L_mg keeps the untransferred motion
(:mod:`stylization.style_reference.transfer`). The
second half are **held out**: the motion generator makes their motion from their sound, added to each
clip's mean face and pose (:class:`~stylization.data.keypoint_motion.Motion`), projected (224 px), and
is scored against

* the references, with the paper's style metrics SLD, SLV, SMD (:mod:`stylization.metrics.style_motion`;
  each generated clip against each reference clip, averaged): how close to the character's style;
* the held-out clip's true landmarks, M-LMD (pixels of 224): whether the lip sync survived.

Rows: ``truth`` (the held-out clips' real motion: the floor), ``untransferred`` (the run as trained),
``transferred`` (fine-tuned on the speaker's own references), ``other_style`` (fine-tuned on the next
speaker's references and sound: a wrong style). Printed last, one JSON object: per row the means over
speakers, and ``speakers``.
"""

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def evaluate(cfg: DictConfig) -> dict:
    import numpy as np
    import torch
    from tqdm import tqdm

    from stylization.constants import FACE_CROP_SIZE
    from stylization.data.audio import mel_windows, melspectrogram
    from stylization.data.corpus import Corpus
    from stylization.data.face_model import build_face_model, project
    from stylization.data.keypoint_motion import Motion
    from stylization.errors import DataError
    from stylization.metrics.landmarks import m_lmd
    from stylization.metrics.style_motion import STYLE_METRICS
    from stylization.runs import load_style_ref_motion
    from stylization.style_reference.transfer import TransferOptions, transfer

    torch.set_num_threads(int(cfg.threads))
    generator = load_style_ref_motion(str(cfg.run)).generator
    corpus = Corpus(str(cfg.data.root))
    fm = build_face_model(str(cfg.data.face_model))
    speakers = corpus.speakers(str(cfg.split))
    if len(speakers) < 2:
        raise DataError(f"split {cfg.split!r} needs 2+ speakers (one's style is the wrong style for another)", corpus.root)
    data = {}
    for spk in speakers:
        clips = corpus.clips(str(cfg.split), [spk])
        if len(clips) < 2:
            raise DataError(f"speaker {spk} has fewer than 2 clips in split {cfg.split!r}", corpus.root)
        half = len(clips) // 2
        rows = []
        for rec in clips:
            motion = Motion.of(fm, corpus.load_coeffs(rec))
            mel = torch.from_numpy(mel_windows(melspectrogram(corpus.load_audio(rec)), np.arange(rec.n_frames), rec.fps))
            rows.append({"motion": motion, "keypoints": motion.keypoints(fm), "mel": mel})
        data[spk] = {"references": rows[:half], "held_out": rows[half:]}
    options = TransferOptions(**OmegaConf.to_container(cfg.transfer))

    def scores(model, spk) -> dict:
        d = data[spk]
        refs = [project(r["keypoints"], FACE_CROP_SIZE).numpy() for r in d["references"]]
        out: dict[str, list[float]] = {}
        for row in d["held_out"]:
            true_kp, m = row["keypoints"], row["motion"]
            if model is None:
                kp = true_kp
            else:
                with torch.no_grad():
                    face, pose = model(row["mel"][None])
                kp = Motion(m.base_face, m.base_pose, face[0], pose[0]).keypoints(fm)
            lm = project(kp, FACE_CROP_SIZE)
            out.setdefault("m_lmd", []).append(float(m_lmd(lm, project(true_kp, FACE_CROP_SIZE))))
            for name, metric in STYLE_METRICS.items():
                out.setdefault(name, []).append(float(np.mean([metric(lm.numpy(), ref) for ref in refs])))
        return {k: float(np.mean(v)) for k, v in out.items()}

    def transferred(spk):
        d = data[spk]
        face = torch.cat([r["motion"].face for r in d["references"]])
        pose = torch.cat([r["motion"].pose for r in d["references"]])
        paired = [(r["motion"].face, r["motion"].pose) for r in d["references"]] if cfg.paired else None
        model, _ = transfer(generator, face, pose, [r["mel"] for r in d["references"]], options, paired=paired)
        return model

    table: dict[str, dict[str, list[float]]] = {}
    for i, spk in enumerate(tqdm(speakers, desc="speakers")):
        other = speakers[(i + 1) % len(speakers)]
        for row, model in (("truth", None), ("untransferred", generator), ("transferred", transferred(spk)),
                           ("other_style", transferred(other))):
            for k, v in scores(model, spk).items():
                table.setdefault(row, {}).setdefault(k, []).append(v)
    result = {row: {k: round(float(np.mean(v)), 4) for k, v in metrics.items()} for row, metrics in table.items()}
    result.update(speakers=len(speakers), paired=bool(cfg.paired), steps=options.steps)
    return result


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval_style_transfer")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(evaluate(cfg))))


if __name__ == "__main__":
    main()
