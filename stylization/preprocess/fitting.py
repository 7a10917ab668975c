"""Source coefficients by fitting the face model to 68 landmarks (no Deep3DFaceRecon needed).

Finds identity, expression, rotation and translation whose projected keypoints match the
landmarks of a ``size``-pixel crop, with L2 priors on identity and expression (Adam, then
L-BFGS, in float64). The crop columns are (size / 224, 0, 0), as the synthetic corpus stores
them. Deep3DFaceRecon (:mod:`stylization.preprocess.deep3d`) is the backend for real photographs
when its files are present; this one is exact for the stand-in model and a fair start elsewhere.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from stylization.constants import COEFF_DIM, COEFF_SLICES, RECON_CROP_SIZE
from stylization.data.face_model import FaceModel


def fit_coefficients(face_model: FaceModel, landmarks: np.ndarray, size: int, steps: int = 60,
                     id_prior: float = 1e-3, exp_prior: float = 1e-3) -> np.ndarray:
    """landmarks [68, 2] (pixels of a size×size crop) -> coefficients [260] (float32).

    The fit runs on a float64 copy of ``face_model`` (a few keypoint bases, cheap to copy): the
    caller's model is shared (the pipeline previews and fits with it) and keeps its dtype, also
    when the fit raises.
    """
    fm = copy.deepcopy(face_model).double()
    target = torch.as_tensor(np.asarray(landmarks, np.float64) * (RECON_CROP_SIZE / size))
    ident = torch.zeros(fm.id_dim, dtype=torch.float64, requires_grad=True)
    exp = torch.zeros(fm.exp_dim, dtype=torch.float64, requires_grad=True)
    angle = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    trans = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    scale = float(target.std())

    def loss_fn(use_shape: bool):
        pred = fm.landmarks(ident if use_shape else ident.detach(), exp if use_shape else exp.detach(), angle, trans)
        err = ((pred - target) / scale).pow(2).sum(-1).mean()
        return err + id_prior * ident.pow(2).sum() + exp_prior * exp.pow(2).sum()

    pose_opt = torch.optim.Adam([angle, trans], lr=0.05)
    for _ in range(steps):  # pose first, the shape held at the mean
        pose_opt.zero_grad()
        loss_fn(False).backward()
        pose_opt.step()
    params = [ident, exp, angle, trans]
    lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        loss = loss_fn(True)
        loss.backward()
        return loss

    lbfgs.step(closure)
    row = np.zeros(COEFF_DIM, np.float32)
    row[COEFF_SLICES["id"]][: fm.id_dim] = ident.detach().numpy()
    row[COEFF_SLICES["exp"]][: fm.exp_dim] = exp.detach().numpy()
    row[COEFF_SLICES["angle"]] = angle.detach().numpy()
    row[COEFF_SLICES["trans"]] = trans.detach().numpy()
    row[COEFF_SLICES["crop"]] = (size / RECON_CROP_SIZE, 0.0, 0.0)
    return row
