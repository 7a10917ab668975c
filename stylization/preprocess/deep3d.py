"""Source coefficients of a photograph with Deep3DFaceRecon (the backend MEAD/HDTF coefficients use).

Files (``checkpoints/``): ``deep3d/epoch_20.pth`` (the regressor, ``net_recon``) and
``BFM/similarity_Lm3D_all.mat`` (its 68 standard 3-D landmarks, for the alignment). The
alignment is Deep3DFaceRecon's ``align_img``: five points from the 68 (eye centres, nose tip,
mouth corners; y flipped), a least-squares weak-perspective fit (POS) to the standard points,
scale = 102 / s, a bicubic resize and a 224 crop. Output rows are [260]: the 257 coefficients
and the crop (s, tx, ty) as PIRenderer and StyleTalk read it.

:meth:`Deep3DBackend.coefficients` does a clip: each frame is aligned on its own (numpy and PIL,
on the CPU), the aligned crops go through the regressor ``batch_size`` at a time on the backend's
device; one frame (``backend(image, lm68)``) is a clip of one.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from stylization.constants import RECON_CROP_SIZE
from stylization.errors import CheckpointError, ConfigError, DataError

RESCALE = 102.0


def five_points(lm68: np.ndarray) -> np.ndarray:
    """[68, 2|3] -> [5, 2|3]: left eye, right eye, nose tip, left and right mouth corners."""
    lm = np.asarray(lm68, np.float64)
    return np.stack([(lm[36] + lm[39]) / 2, (lm[42] + lm[45]) / 2, lm[30], lm[48], lm[54]])


def pos_fit(image_points: np.ndarray, model_points: np.ndarray) -> tuple[np.ndarray, float]:
    """Weak-perspective fit: image [N, 2] ≈ s · R[:2] · model [N, 3] + t -> (t [2], s)."""
    n = len(image_points)
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3], a[0::2, 3] = model_points, 1
    a[1::2, 4:7], a[1::2, 7] = model_points, 1
    k = np.linalg.lstsq(a, image_points.reshape(-1), rcond=None)[0]
    return np.array([k[3], k[7]]), (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2


def align(image: np.ndarray, lm68: np.ndarray, lm3d5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3] + landmarks [68, 2] (pixels, y down) -> (224 crop, params [w0, h0, s, tx, ty])."""
    h0, w0 = image.shape[:2]
    lm = np.asarray(lm68, np.float64).copy()
    lm[:, 1] = h0 - 1 - lm[:, 1]
    t, s = pos_fit(five_points(lm), lm3d5)
    s = RESCALE / s
    w, h = int(w0 * s), int(h0 * s)
    left = int(w / 2 - RECON_CROP_SIZE / 2 + (t[0] - w0 / 2) * s)
    up = int(h / 2 - RECON_CROP_SIZE / 2 + (h0 / 2 - t[1]) * s)
    resized = Image.fromarray(image).resize((w, h), resample=Image.BICUBIC)
    crop = np.asarray(resized.crop((left, up, left + RECON_CROP_SIZE, up + RECON_CROP_SIZE)))
    return crop, np.array([w0, h0, s, t[0], t[1]], np.float64)


class Deep3DBackend:
    """``recon_path`` (epoch_20.pth) + ``bfm_folder`` (with similarity_Lm3D_all.mat); ``device`` runs the
    regressor; ``batch_size``: aligned crops per forward pass (memory and speed; the rows do not depend on it)."""

    def __init__(self, recon_path: str, bfm_folder: str, device: torch.device | str = "cpu", batch_size: int = 32):
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError

        from stylization.loading import load_official

        if int(batch_size) < 1:
            raise ConfigError(f"Deep3DFaceRecon batch_size must be at least 1, got {batch_size!r}")
        lm_path = os.path.join(bfm_folder, "similarity_Lm3D_all.mat")
        missing = [p for p in (recon_path, lm_path) if not os.path.isfile(p)]
        if missing:
            raise CheckpointError("Deep3DFaceRecon files missing: " + ", ".join(missing) + " (epoch_20.pth from "
                                  "Deep3DFaceRecon_pytorch's release; similarity_Lm3D_all.mat from its BFM folder; "
                                  "see checkpoints/README.md), or use coeffs_backend=fit")
        try:
            lm3d = np.asarray(loadmat(lm_path)["lm"], np.float64)
        except (MatReadError, OSError, EOFError, ValueError, LookupError, TypeError) as exc:  # what scipy raises
            # for damaged or foreign files (and a missing "lm" field); anything else is a bug to see
            raise CheckpointError(f"not a readable similarity_Lm3D_all.mat ({exc})", lm_path) from None
        self.lm3d5 = five_points(lm3d)
        self.net = load_official("deep3d_recon", recon_path).eval().to(device)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def coefficients(self, frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """RGB uint8 frames [T, H, W, 3] + landmarks [T, 68, 2] (pixels, y down) -> coefficients [T, 260]
        (float32): the regressor's 257, then each frame's own crop (s, tx, ty)."""
        frames, landmarks = np.asarray(frames), np.asarray(landmarks)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise DataError(f"Deep3DFaceRecon takes RGB uint8 frames [T, H, W, 3], got {frames.dtype} "
                            f"{list(frames.shape)}")
        if landmarks.shape != (len(frames), 68, 2):
            raise DataError(f"Deep3DFaceRecon takes landmarks [T, 68, 2] with T = {len(frames)} frames, "
                            f"got {list(landmarks.shape)}")
        rows = np.empty((len(frames), 260), np.float32)
        for start in range(0, len(frames), self.batch_size):
            # Aligned one batch at a time, so a long clip holds batch_size crops, not T.
            aligned = [align(f, lm, self.lm3d5) for f, lm in
                       zip(frames[start:start + self.batch_size], landmarks[start:start + self.batch_size])]
            crops = torch.from_numpy(np.stack([crop for crop, _ in aligned])).to(self.device)  # uint8 [B, 224, 224, 3]
            x = crops.permute(0, 3, 1, 2).float().div(255)  # [B, 3, 224, 224] in [0, 1], as Deep3DFaceRecon feeds it
            end = start + len(aligned)
            rows[start:end, :257] = self.net(x).cpu().numpy()
            rows[start:end, 257:] = np.stack([params[2:] for _, params in aligned])  # (s, tx, ty), float64 -> 32
        return rows

    def __call__(self, image: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] + landmarks [68, 2] -> coefficients [260] (float32): a clip of one frame."""
        return self.coefficients(np.asarray(image)[None], np.asarray(lm68)[None])[0]
