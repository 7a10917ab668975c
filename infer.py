"""Inference: ``python infer.py checkpoint=RUN audio=SPEECH text="..." [source_coeffs=X.npy] [out=OUT.npy]``.

Today: speech + emotion text -> expression coefficients with a trained style_e run (or an
audio2exp run, which ignores the text), plus a landmark preview video with the speech. The
full image/audio/text/art pipeline extends this.
"""

import hydra
from omegaconf import DictConfig


def infer(cfg: DictConfig) -> None:
    import logging

    from stylization.data.face_model import build_face_model
    from stylization.engine.distributed import resolve_device
    from stylization.errors import ConfigError
    from stylization.pipeline import (MotionModel, coefficients_from_audio, landmark_video, load_source_coeffs,
                                      save_outputs)

    log = logging.getLogger("stylization.infer")
    text = None if cfg.text is None else str(cfg.text).strip()
    if text is not None and not 0 < len(text) <= 300:
        raise ConfigError("text must be a description of 1 to 300 characters")
    device = resolve_device(str(cfg.device))
    model = MotionModel(str(cfg.checkpoint), device, bool(cfg.use_ema))
    path = model.path
    source = load_source_coeffs(cfg.source_coeffs)
    coeffs, wav = coefficients_from_audio(model, str(cfg.audio), source, text, float(cfg.emotion_scale), int(cfg.seed))
    frames = landmark_video(build_face_model(str(cfg.data.face_model)), coeffs, int(cfg.size)) if cfg.video else None
    for written in save_outputs(str(cfg.out), coeffs, frames, wav):
        log.info("wrote %s", written)
    print(f"{len(coeffs)} frames at 25 fps from {path}")


@hydra.main(version_base="1.3", config_path="configs", config_name="infer")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: infer(cfg))


if __name__ == "__main__":
    main()
