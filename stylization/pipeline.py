"""Inference: from the user's inputs to coefficients and video.

Today this runs the stages that exist: speech -> per-frame expression coefficients with
a trained Audio2Exp, and a preview video of the face model's landmarks with the speech
muxed. The Style-E diffusion and the Style-A renderer plug in here as they land.
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


@torch.no_grad()
def coefficients_from_audio(audio2exp: torch.nn.Module, audio_path: str, source: np.ndarray,
                            device: torch.device, chunk_frames: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Speech file -> (coefficients [T, 260] at 25 fps, the 16 kHz audio).

    Identity, pose and crop are the source's, held still; the expression comes from
    Audio2Exp with eyes open (blink 0). Frames are processed in chunks, so audio of any
    length works.
    """
    wav = load_audio(audio_path)
    check_speech(wav, audio_path)
    n_frames = n_video_frames(wav.size)
    mel = melspectrogram(wav)
    src_exp = torch.from_numpy(source[COEFF_SLICES["exp"]]).to(device)[None]
    exp = []
    for start in range(0, n_frames, chunk_frames):
        frames = np.arange(start, min(start + chunk_frames, n_frames))
        windows = torch.from_numpy(mel_windows(mel, frames)).to(device)[None]
        exp.append(audio2exp(windows, src_exp, torch.zeros(1, len(frames), device=device))[0].float().cpu())
    coeffs = np.tile(source, (n_frames, 1))
    coeffs[:, COEFF_SLICES["exp"]] = torch.cat(exp).numpy()
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
