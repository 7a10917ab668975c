"""SyncNet on a face video and its audio: LSE-D, LSE-C (Sync_conf) and the AV offset of one clip.

:func:`evaluate` follows joonson/syncnet_python (``run_pipeline.py``'s crop, then
``SyncNetInstance.evaluate``), given RGB frames at 25 fps and 16 kHz mono audio:

1. **Face crop** (:func:`face_crops`). The official pipeline detects faces with S3FD, median-filters
   the box centre and half-size ``s`` (half the larger box side) over 13 frames, pads the frame by
   ``int(1.8·s)`` with grey 110, and crops rows ``cy - s .. cy + 1.8·s`` and columns
   ``cx - 1.4·s .. cx + 1.4·s`` (``crop_scale`` 0.4): the whole face, chin and some neck, not a mouth
   crop. That square is resized to 224x224 (``cv2.resize``, bilinear; a SyncNet trained here at
   another ``frame_size`` gets crops of its size). Given per-frame face
   ``boxes``, we do exactly that. Without boxes we resize the **whole frame** to 224: our clips
   are already face crops (FOMM-style, 256 px, the face centred and filling most of the frame), so we
   run no detector; such a crop sits a little higher and tighter than the official one, a departure to
   state beside any number computed that way.
2. **Colour**: the official reads frames with ``cv2`` (BGR) and feeds 0..255 floats unnormalised; we
   flip our RGB to BGR. (It also re-encodes the crop as XVID and reads it back as JPEG; that loss is
   not reproduced.)
3. **Audio**: MFCC of the int16 samples (:func:`stylization.metrics.sync.mfcc`), 100 steps per second.
4. **Windows**: ``min_length = min(T, floor(S / 640))``; one video window (frames i..i+4) and one
   audio window (MFCC steps 4i..4i+19) per i in ``0 .. min_length - 6`` (the official's
   ``range(lastframe)`` with ``lastframe = min_length - 5``, one window short of the last possible).
5. **Scores**: :func:`stylization.metrics.sync.sync_from_embeddings` over ±``vshift`` frames.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from scipy.signal import medfilt

from stylization.constants import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from stylization.metrics.sync import VSHIFT, int16_scale, mfcc, sync_from_embeddings
from stylization.syncnet.model import (AUDIO_WINDOW_STEPS, FRAME_SIZE, MFCC_STEPS_PER_FRAME,
                                       VIDEO_WINDOW_FRAMES, SyncNet)

CROP_SCALE = 0.4  # run_pipeline.py's --crop_scale
PAD_VALUE = 110  # grey of the padding around the frame before cropping
BOX_SMOOTHING = 13  # frames of the median filter over box centre and size


def face_crops(frames: np.ndarray, boxes: np.ndarray | None = None, size: int = FRAME_SIZE,
               lower_half: bool = False) -> np.ndarray:
    """RGB uint8 frames [T, H, W, 3] -> BGR uint8 crops [T, size, size, 3].

    ``boxes`` [T, 4] are face boxes (x1, y1, x2, y2) in pixels, e.g. a detector's: the official crop
    around them (module docstring, step 1). None: the whole frame, resized. ``lower_half``: only the
    crop's lower half, stretched to the square (a SyncNet trained with ``input_crop="lower_half"``)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T >= 1, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    bgr = frames[..., ::-1]

    def resized(crop: np.ndarray) -> np.ndarray:
        if lower_half:
            crop = crop[crop.shape[0] // 2:]
        return cv2.resize(np.ascontiguousarray(crop), (size, size))

    if boxes is None:
        return np.stack([resized(f) for f in bgr])
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape != (len(frames), 4):
        raise ValueError(f"boxes must be [T, 4] (x1, y1, x2, y2) for T={len(frames)} frames, got {list(boxes.shape)}")
    # scipy's medfilt zero-pads the ends, as the official's does. The official tracks are >= 100 frames;
    # on a clip shorter than the kernel the zeros would win the median, so the kernel shrinks to the
    # largest odd length <= T there (a departure only where the official never runs).
    kernel = min(BOX_SMOOTHING, len(frames) - 1 + len(frames) % 2)
    half = medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel)
    cy = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel)
    cx = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel)
    crops = []
    for frame, s, y, x in zip(bgr, half, cy, cx):
        pad = int(s * (1 + 2 * CROP_SCALE))
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        y, x = y + pad, x + pad
        face = padded[int(y - s):int(y + s * (1 + 2 * CROP_SCALE)),
                      int(x - s * (1 + CROP_SCALE)):int(x + s * (1 + CROP_SCALE))]
        crops.append(resized(face))
    return np.stack(crops)


def window_count(n_frames: int, n_samples: int) -> int:
    """Windows the official scores for T frames and S samples: min(T, floor(S / 640)) - 5 (may be <= 0)."""
    return min(n_frames, n_samples // SAMPLES_PER_FRAME) - VIDEO_WINDOW_FRAMES


def audio_windows(wav: np.ndarray, n_windows: int) -> torch.Tensor:
    """16 kHz mono audio [S] (int16, or floats in [-1, 1]) -> MFCC windows [n_windows, 1, 13, 20]:
    window i is steps 4i .. 4i+19."""
    ceps = torch.from_numpy(mfcc(int16_scale(wav)).T.astype(np.float32))  # [13, M]
    starts = np.arange(n_windows) * MFCC_STEPS_PER_FRAME
    if n_windows and starts[-1] + AUDIO_WINDOW_STEPS > ceps.shape[1]:
        raise ValueError(f"{n_windows} windows need {starts[-1] + AUDIO_WINDOW_STEPS} MFCC steps, "
                         f"the audio gives {ceps.shape[1]}")
    return torch.stack([ceps[:, s:s + AUDIO_WINDOW_STEPS] for s in starts])[:, None]


def video_windows(crops: torch.Tensor, starts: range) -> torch.Tensor:
    """BGR crops [T, 224, 224, 3] (uint8 or float) -> float windows [len(starts), 3, 5, 224, 224], frames
    i..i+4 for each start i."""
    windows = torch.stack([crops[i:i + VIDEO_WINDOW_FRAMES] for i in starts])  # [N, 5, 224, 224, 3]
    return windows.permute(0, 4, 1, 2, 3).float()  # only this batch becomes float


@torch.no_grad()
def embed_clip(model: SyncNet, frames: np.ndarray, wav: np.ndarray, boxes: np.ndarray | None = None,
               batch_windows: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB uint8 frames [T, H, W, 3] at 25 fps and 16 kHz mono audio [S] -> (video, audio) embeddings
    [N, D] on the CPU, N = :func:`window_count` (at least 1, else ValueError)."""
    if model.training:
        raise ValueError("the SyncNet is in training mode (BatchNorm would use batch statistics); call .eval()")
    n = window_count(len(frames), len(wav))
    if n < 1:
        raise ValueError(f"SyncNet needs at least {VIDEO_WINDOW_FRAMES + 1} frames of video and audio "
                         f"({(VIDEO_WINDOW_FRAMES + 1) / FPS:.2f} s at {FPS} fps, {SAMPLE_RATE} Hz); "
                         f"got {len(frames)} frames and {len(wav)} samples")
    device = next(model.parameters()).device
    crops = torch.from_numpy(face_crops(frames, boxes, getattr(model, "frame_size", FRAME_SIZE),  # 224: the official
                                        getattr(model, "input_crop", "face") == "lower_half"))
    audio = audio_windows(wav, n)
    video_out, audio_out = [], []
    for lo in range(0, n, batch_windows):
        hi = min(n, lo + batch_windows)
        video_out.append(model.embed_video(video_windows(crops, range(lo, hi)).to(device)).cpu())
        audio_out.append(model.embed_audio(audio[lo:hi].to(device)).cpu())
    return torch.cat(video_out), torch.cat(audio_out)


def evaluate(model: SyncNet, frames: np.ndarray, wav: np.ndarray, boxes: np.ndarray | None = None,
             vshift: int = VSHIFT, batch_windows: int = 20) -> dict[str, float | int]:
    """One clip's ``{"lse_d", "lse_c", "offset"}``: RGB uint8 face frames [T, H, W, 3] at 25 fps, its
    16 kHz mono audio [S], optional face boxes [T, 4] (see :func:`face_crops`), offsets searched over
    ±``vshift`` frames. ``model`` must be in eval mode; it runs on its own device."""
    video, audio = embed_clip(model, frames, wav, boxes, batch_windows)
    return sync_from_embeddings(video, audio, vshift)
