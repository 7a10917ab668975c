"""Style transfer to a character: ``python scripts/style_transfer.py run=MOTION_RUN references=DIR audio=SPEECH
out=NEW_RUN``.

The reference-frame method's transfer phase (§4; :mod:`stylization.style_reference.transfer`): the
character's reference frames (a folder of pictures or a video) go through the face and coefficient steps;
their landmark motion is the style the ``style_ref_motion`` run's motion generator is fine-tuned towards
(``transfer.steps`` steps, configs/transfer/default.yaml) on the audio stream ``audio=`` (or the video's
own sound, its frames then pairing up with it: the generator's own loss on them is L_mg). The result is a run (``out``) that ``infer.py style_ref_motion=OUT style_frames=DIR ...``
uses without transferring again; it keeps the untransferred generator (``style_strength`` blends the
two) and the audio's features for the manifold projection (``style_projection``).
"""

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def style_transfer(cfg: DictConfig) -> dict:
    from omegaconf import OmegaConf

    from stylization.data.audio import check_speech, load_audio
    from stylization.engine.distributed import resolve_device
    from stylization.errors import ConfigError
    from stylization.pipeline import Pipeline
    from stylization.reference_pipeline import read_style_references, save_transfer_run, transfer_style
    from stylization.style_reference.transfer import TransferOptions

    if int(cfg.transfer.steps) < 1:
        raise ConfigError(f"transfer.steps must be >= 1, got {cfg.transfer.steps}")
    pipeline = Pipeline(cfg, resolve_device(str(cfg.device)))
    detector = pipeline._detector()
    refs = read_style_references(str(cfg.references), detector, pipeline.coeff_backend, pipeline.face_model)
    stream = None  # the references video's own sound (its frames pair up with it)
    if cfg.audio is not None:
        stream = load_audio(str(cfg.audio))
        check_speech(stream, str(cfg.audio))
    elif refs.wav is None:
        raise ConfigError(f"references={cfg.references} has no sound: give the transfer's audio stream with audio=SPEECH")
    options = TransferOptions(**OmegaConf.to_container(cfg.transfer, resolve=True))
    projection = {"weight": float(cfg.style_projection), "k": int(cfg.style_projection_k)}
    tuned, base, bank = transfer_style(str(cfg.run), refs, stream, options, projection)
    inputs = {"references": str(cfg.references), "audio": None if cfg.audio is None else str(cfg.audio),
              "projection": projection["weight"], "projection_k": projection["k"],
              "options": OmegaConf.to_container(cfg.transfer, resolve=True)}
    file = save_transfer_run(str(cfg.out), str(cfg.run), tuned, base, bank, inputs)
    return {"out": str(cfg.out), "checkpoint": file, "reference_frames": len(refs.coeffs),
            "style_reference_images": [int(i) for i in refs.chosen], "projection_bank": 0 if bank is None else len(bank.bank)}


@hydra.main(version_base="1.3", config_path="../configs", config_name="style_transfer")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(style_transfer(cfg))))


if __name__ == "__main__":
    main()
