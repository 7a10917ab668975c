"""3DMM coefficient files of the other talking-head projects, in and out.

What they read and write (each with its frame rate):

* StyleTalk, DreamTalk and PIRenderer's extraction script: a ``.mat`` with ``coeff`` [T, 257]
  (Deep3DFaceRecon's id 80, exp 64, tex 80, angle 3, gamma 27, trans 3) and
  ``transform_params`` [T, 5] (w0, h0, s, tx, ty of the alignment). StyleTalk's samples are
  30 fps, DreamTalk's 25 fps.
* SadTalker: ``coeff_3dmm`` [T, 73] (exp 64, angle 3, trans 3, then s, tx, ty) and ``full_3dmm``
  [T, 257].

Ours is one [T, 260] row per 25 fps frame: the 257 coefficients and (s, tx, ty)
(:data:`stylization.constants.COEFF_SLICES`). :func:`read_3dmm` reads any of those files to
that layout, resampled to 25 fps; :func:`write_3dmm` writes ours with every key above, so each
of those projects reads it, at the frame rate asked for.
"""

from __future__ import annotations

import os

import numpy as np

from stylization.constants import COEFF_DIM, COEFF_SLICES, FACE_CROP_SIZE, FPS, RECON_DIM, SEMANTIC_DIM
from stylization.data.coeffs import semantic_vectors
from stylization.data.video import resample_indices
from stylization.errors import DataError


def resample_rows(rows: np.ndarray, src_fps: float, fps: float) -> np.ndarray:
    """[T, D] rows at ``src_fps`` -> rows at ``fps``: the row on screen at each output time (the rule
    videos are resampled with, :func:`stylization.data.video.resample_indices`)."""
    if abs(src_fps - fps) < 1e-6:
        return rows
    return rows[resample_indices(np.arange(len(rows)) / src_fps, src_fps, fps)]


def _from_semantic(rows: np.ndarray) -> np.ndarray:
    """[T, 73] (exp, angle, trans, crop) -> [T, 260] with identity, texture and lighting zero."""
    out = np.zeros((len(rows), COEFF_DIM), np.float32)
    start = 0
    for part in ("exp", "angle", "trans", "crop"):
        width = COEFF_SLICES[part].stop - COEFF_SLICES[part].start
        out[:, COEFF_SLICES[part]] = rows[:, start:start + width]
        start += width
    return out


def _array(value, key: str, path: str) -> np.ndarray:
    """A .mat variable as float32; a cell array, struct or text is a :class:`DataError` naming ``key``."""
    try:
        return np.asarray(value, np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{key!r} is not a numeric matrix (a cell array, struct or text?)", path) from None


def _crop(mat: dict, n_frames: int, path: str) -> np.ndarray:
    """[T, 3] (s, tx, ty) from ``transform_params`` (or ``trans_params``) [T, 5] or one [5] row for the
    whole clip; without them, scale 1 and the centre of a 256 crop."""
    params = mat.get("transform_params", mat.get("trans_params"))
    if params is None:
        return np.tile(np.array([1.0, FACE_CROP_SIZE / 2, FACE_CROP_SIZE / 2], np.float32), (n_frames, 1))
    params = _array(params, "transform_params", path)
    if params.size == 5:
        params = np.tile(params.reshape(1, 5), (n_frames, 1))
    if params.shape != (n_frames, 5):
        raise DataError(f"'transform_params' must be [T, 5] (w0, h0, s, tx, ty) with T = {n_frames} as the "
                        f"coefficients, got {list(params.shape)}", path)
    return params[:, 2:5]


def read_3dmm(path: str | os.PathLike, fps: float | None = None) -> np.ndarray:
    """A StyleTalk / DreamTalk / PIRenderer (``coeff`` + ``transform_params``) or SadTalker
    (``coeff_3dmm``) ``.mat`` -> float32 [T, 260] at 25 fps. ``fps``: the file's frame rate
    (the files do not say it: StyleTalk's are 30, DreamTalk's and SadTalker's 25); None: 25."""
    from scipy.io import loadmat

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("3DMM file not found", path)
    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises many types for damaged or foreign files
        raise DataError(f"not a readable .mat file ({exc})", path) from None
    if "coeff" in mat:
        coeff = _array(mat["coeff"], "coeff", path)
        if coeff.ndim != 2 or coeff.shape[1] != RECON_DIM:
            raise DataError(f"'coeff' must be [T, {RECON_DIM}], got {list(coeff.shape)}", path)
        rows = np.concatenate([coeff, _crop(mat, len(coeff), path)], 1)
    elif "coeff_3dmm" in mat:
        semantic = _array(mat["coeff_3dmm"], "coeff_3dmm", path)
        if semantic.ndim != 2 or semantic.shape[1] not in (SEMANTIC_DIM, RECON_DIM, COEFF_DIM):
            raise DataError(f"'coeff_3dmm' must be [T, {SEMANTIC_DIM}] (or a whole row, [T, {RECON_DIM}] or "
                            f"[T, {COEFF_DIM}]), got {list(semantic.shape)}", path)
        if semantic.shape[1] == SEMANTIC_DIM:
            rows = _from_semantic(semantic)
        elif semantic.shape[1] == RECON_DIM:
            rows = np.concatenate([semantic, _crop(mat, len(semantic), path)], 1)
        else:
            rows = semantic.copy()
        if "full_3dmm" in mat:  # identity, texture and lighting too
            full = _array(mat["full_3dmm"], "full_3dmm", path)
            if full.shape == (len(rows), RECON_DIM):
                rows[:, :RECON_DIM] = full
    else:
        raise DataError("no 'coeff' (StyleTalk / DreamTalk / PIRenderer) or 'coeff_3dmm' (SadTalker) key", path)
    if len(rows) == 0:
        raise DataError("the coefficients have no frames", path)
    return resample_rows(rows, float(fps or FPS), FPS).astype(np.float32)


def write_3dmm(path: str | os.PathLike, coeffs: np.ndarray, fps: float = FPS, frame_size: int = FACE_CROP_SIZE) -> None:
    """Our [T, 260] rows (25 fps) -> a ``.mat`` at ``fps`` with ``coeff``, ``transform_params``
    (w0 = h0 = ``frame_size``), ``coeff_3dmm`` and ``full_3dmm``; written atomically."""
    from scipy.io import savemat

    rows = resample_rows(np.asarray(coeffs, np.float32), FPS, fps)
    params = np.concatenate([np.full((len(rows), 2), frame_size, np.float32), rows[:, COEFF_SLICES["crop"]]], 1)
    path = os.fspath(path)
    tmp = path + ".tmp.mat"
    try:
        savemat(tmp, {"coeff": rows[:, :RECON_DIM], "transform_params": params,
                      "coeff_3dmm": np.asarray(semantic_vectors(rows), np.float32), "full_3dmm": rows[:, :RECON_DIM]})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
