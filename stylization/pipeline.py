"""Inference: from the user's inputs to coefficients and video.

Today this runs the stages that exist: speech (+ an emotion text) -> per-frame expression
coefficients with a trained Style-E (or Audio2Exp alone), and a preview video of the face
model's landmarks with the speech muxed. The Style-A renderer plugs in here as it lands.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from stylization.data.audio import check_speech, load_audio, mel_windows, melspectrogram, n_video_frames
from stylization.data.coeffs import COEFF_DIM, COEFF_SLICES, validate_coeffs
from stylization.data.draw import landmark_canvas
from stylization.data.face_model import FaceModel
from stylization.data.video import write_video
from stylization.errors import DataError


def load_source_coeffs(path: str | None) -> np.ndarray:
    """The source face's coefficients [260]: the first row of a .npy file, or zeros (mean face)."""
    if path is None:
        return np.zeros(COEFF_DIM, np.float32)
    if not os.path.isfile(path):
        raise DataError("source coefficient file not found", path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"not a readable .npy array ({exc})", path) from None
    arr = arr[None] if arr.ndim == 1 else arr
    validate_coeffs(arr, path)
    row = np.zeros(COEFF_DIM, np.float32)
    row[: arr.shape[1]] = arr[0]
    return row


class MotionModel:
    """Speech -> expression, from a training run of stage ``style_e`` (text-controlled) or
    ``audio2exp`` (audio only), rebuilt from the checkpoint alone."""

    def __init__(self, checkpoint: str, device: torch.device, use_ema: bool = True):
        from stylization.engine.checkpoint import module_from_checkpoint, resolve_checkpoint
        from stylization.style_e.generate import StyleE

        path, state = resolve_checkpoint(checkpoint, "train one with: python train.py stage=style_e data.root=DIR "
                                                     "(or stage=audio2exp)")
        self.path, self.stage = path, state.get("stage")
        if "denoiser" in state.get("modules", {}):
            self.style_e = StyleE.from_checkpoint(path, use_ema).to(device)
            self.audio2exp = None
        else:
            self.style_e = None
            self.audio2exp = module_from_checkpoint(state, "audio2exp", use_ema, path).to(device)
        self.device = device

    @torch.no_grad()
    def expression(self, mel: torch.Tensor, source_exp: torch.Tensor, text: str | None, guidance: float,
                   seed: int) -> torch.Tensor:
        """Mel windows [T, 1, 80, 16], source exp [64] -> expression [T, 64] (eyes open)."""
        mel, source_exp = mel.to(self.device), source_exp.to(self.device)
        if self.style_e is not None:
            return self.style_e.generate(mel, source_exp, text, guidance, seed).cpu()
        out = [self.audio2exp(mel[None, s:s + 256], source_exp[None], torch.zeros(1, len(mel[s:s + 256]),
                                                                                  device=self.device))[0].float()
               for s in range(0, len(mel), 256)]
        return torch.cat(out).cpu()


def coefficients_from_audio(model: MotionModel, audio_path: str, source: np.ndarray, text: str | None = None,
                            guidance: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Speech file -> (coefficients [T, 260] at 25 fps, the 16 kHz audio).

    Identity, pose and crop are the source's, held still; the expression comes from the
    motion model (with the emotion text for Style-E). Audio of any length works.
    """
    wav = load_audio(audio_path)
    check_speech(wav, audio_path)
    n_frames = n_video_frames(wav.size)
    mel = torch.from_numpy(mel_windows(melspectrogram(wav), n_frames))
    src_exp = torch.from_numpy(source[COEFF_SLICES["exp"]])
    coeffs = np.tile(source, (n_frames, 1))
    coeffs[:, COEFF_SLICES["exp"]] = model.expression(mel, src_exp, text, guidance, seed).numpy()
    return coeffs, wav


def landmark_video(face_model: FaceModel, coeffs: np.ndarray, size: int) -> np.ndarray:
    """Coefficients [T, 260] -> RGB frames [T, size, size, 3] of the projected landmarks."""
    lm = face_model.landmarks_from_coeffs(torch.from_numpy(coeffs).float(), size).numpy()
    return np.stack([landmark_canvas([p], [(30, 30, 30)], size) for p in lm])


def save_outputs(out: str, coeffs: np.ndarray, frames: np.ndarray | None, wav: np.ndarray) -> list[str]:
    """Write ``out`` (.npy) and, with frames, the .mp4 beside it; nothing partial on failure."""
    directory = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output directory ({exc.strerror})", directory) from None
    if not os.access(directory, os.W_OK):
        raise DataError("output directory is not writable", directory)
    written = []
    tmp = out + ".tmp.npy"
    np.save(tmp, coeffs.astype(np.float32))
    os.replace(tmp, out)
    written.append(out)
    if frames is not None:
        video = os.path.splitext(out)[0] + ".mp4"
        write_video(video, frames, audio=wav)
        written.append(video)
    return written
