"""The 3DMM coefficient layout shared by every stage.

Deep3DFaceRecon writes 257 coefficients per frame; its alignment step adds the crop
parameters (s, tx, ty), stored as columns 257:260. The renderers read a 73-d "semantic"
vector per frame (exp 64 + angle 3 + trans 3 + crop 3) in windows of 27 frames centred
on the frame, clamped at the clip's ends (PIRenderer / StyleHEAT convention).

Functions accept NumPy arrays or torch tensors and return the same kind.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

# The layout is written in stylization.constants; SEMANTIC_DIM and WINDOW_FRAMES stay importable from here.
from stylization.constants import (  # noqa: F401
    COEFF_DIM,
    COEFF_SLICES,
    RECON_DIM,
    SEMANTIC_DIM,
    SEMANTIC_PARTS,
    WINDOW_FRAMES,
    WINDOW_RADIUS,
)
from stylization.errors import DataError

Array = Union[np.ndarray, torch.Tensor]


def _cat(parts: list[Array]) -> Array:
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts, dim=-1)
    return np.concatenate(parts, axis=-1)


def validate_coeffs(coeffs: Array, source: str = "coefficients", n_frames: int | None = None) -> None:
    """Raise :class:`DataError` naming ``source`` unless ``coeffs`` is finite [T, 260] (or [T, 257]).

    ``n_frames``, when given, is the frame count the array must have.
    """
    shape = tuple(coeffs.shape)
    if len(shape) != 2 or shape[1] not in (RECON_DIM, COEFF_DIM):
        raise DataError(f"expected coefficients of shape [T, {COEFF_DIM}] (or [T, {RECON_DIM}]), got {list(shape)}", source)
    if n_frames is not None and shape[0] != n_frames:
        raise DataError(f"expected {n_frames} frames of coefficients, got {shape[0]}", source)
    finite = torch.isfinite(coeffs).all() if isinstance(coeffs, torch.Tensor) else np.isfinite(coeffs).all()
    if not bool(finite):
        raise DataError("coefficients contain NaN or infinite values", source)


def split_coeffs(coeffs: Array) -> dict[str, Array]:
    """Views of each named part of [..., 257 or 260] coefficients (``crop`` only with 260)."""
    width = coeffs.shape[-1]
    if width not in (RECON_DIM, COEFF_DIM):
        raise ValueError(f"last axis must be {RECON_DIM} or {COEFF_DIM}, got {width}")
    return {k: coeffs[..., s] for k, s in COEFF_SLICES.items() if s.stop <= width}


def semantic_vectors(coeffs: Array) -> Array:
    """[..., 260] coefficients -> [..., 73] renderer vectors (exp, angle, trans, crop)."""
    if coeffs.shape[-1] != COEFF_DIM:
        raise ValueError(f"semantic vectors need {COEFF_DIM} columns (crop included), got {coeffs.shape[-1]}")
    return _cat([coeffs[..., COEFF_SLICES[k]] for k in SEMANTIC_PARTS])


def window_indices(centers: Array | int, n_frames: int, radius: int = WINDOW_RADIUS) -> np.ndarray:
    """Frame indices of the windows around ``centers``, clamped to [0, n_frames - 1].

    Returns an int64 array of shape [len(centers), 2 * radius + 1] (or [2 * radius + 1]
    for a scalar centre).
    """
    if n_frames < 1:
        raise ValueError("n_frames must be at least 1")
    c = np.asarray(centers, dtype=np.int64)
    idx = c[..., None] + np.arange(-radius, radius + 1, dtype=np.int64)
    return np.clip(idx, 0, n_frames - 1)


def semantic_windows(coeffs: Array, centers: Array | None = None, radius: int = WINDOW_RADIUS) -> Array:
    """[T, 260] coefficients -> [N, 73, 2 * radius + 1] renderer inputs (channels first).

    ``centers`` defaults to every frame (N = T).
    """
    n_frames = coeffs.shape[0]
    if centers is None:
        centers = np.arange(n_frames)
    sem = semantic_vectors(coeffs)
    idx = window_indices(centers, n_frames, radius)
    if isinstance(sem, torch.Tensor):
        win = sem[torch.as_tensor(idx, device=sem.device)]
        return win.transpose(-1, -2).contiguous()
    return np.ascontiguousarray(sem[idx].swapaxes(-1, -2))
