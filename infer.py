"""Inference: ``python infer.py checkpoint=RUN audio=SPEECH [source_coeffs=X.npy] [out=OUT.npy]``.

Today: speech -> expression coefficients with a trained audio2exp run, plus a landmark
preview video with the speech. The full image/audio/text/art pipeline extends this.
"""

import hydra
from omegaconf import DictConfig


def infer(cfg: DictConfig) -> None:
    import logging

    from stylization.data.face_model import build_face_model
    from stylization.engine.checkpoint import module_from_checkpoint, resolve_checkpoint
    from stylization.engine.distributed import resolve_device
    from stylization.pipeline import (coefficients_from_audio, landmark_video, load_source_coeffs, save_outputs)

    log = logging.getLogger("stylization.infer")
    device = resolve_device(str(cfg.device))
    path, state = resolve_checkpoint(str(cfg.checkpoint), "train one with: python train.py stage=audio2exp data.root=DIR")
    net = module_from_checkpoint(state, "audio2exp", bool(cfg.use_ema), path).to(device)
    source = load_source_coeffs(cfg.source_coeffs)
    coeffs, wav = coefficients_from_audio(net, str(cfg.audio), source, device)
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
