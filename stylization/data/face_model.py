"""Face models: 3DMM coefficients -> 68 3D keypoints -> projected 2D landmarks.

One class, :class:`FaceModel`, holds the keypoint rows of a linear face model (mean shape,
identity basis, expression basis) and Deep3DFaceRecon's pose and camera:

* world = R(angle) · (mean + id_basis · id + exp_basis · exp) + trans, with
  R = Rz(roll) · Ry(yaw) · Rx(pitch), angles in radians;
* the camera sits at z = 10 looking down -z; a point projects to
  (focal · x / (10 - z) + 112, focal · y / (10 - z) + 112) with focal 1015 in a 224 crop
  whose y axis points up; :meth:`FaceModel.landmarks` returns image pixels with y down
  (``223 - y``, Deep3DFaceRecon's flip) scaled to the requested image size.

Two sources build it:

* :func:`load_bfm` reads the user's ``BFM_model_front.mat`` (Deep3DFaceRecon's file, which the
  project cannot ship), recentres the mesh and keeps its 68 keypoint rows;
* :func:`stand_in_face_model` builds our own deterministic 68-point model with 80 identity and
  64 expression components whose first expression components are named facial actions
  (:data:`EXPRESSION_COMPONENTS`). The synthetic corpus and the tests use it.

Keypoints follow the 68-point iBUG order, 0-based.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from stylization.constants import (
    BROWS,
    COEFF_SLICES,
    EXP_DIM,
    EYES,
    ID_DIM,
    INNER_LIPS,
    JAW,
    LEFT_BROW,
    LEFT_EYE,
    LIP_OPENING_PAIRS,
    MOUTH,
    N_LANDMARKS,
    NOSE,
    NOSE_BASE,
    NOSE_BRIDGE,
    OUTER_LIPS,
    RECON_CROP_SIZE,
    RIGHT_BROW,
    RIGHT_EYE,
)
from stylization.errors import DataError

FOCAL, CENTER, CAMERA_DISTANCE = 1015.0, 112.0, 10.0  # Deep3DFaceRecon's camera: px, px of the 224 crop, BFM units


class FaceModel(nn.Module):
    """Keypoint part of a linear 3DMM with Deep3DFaceRecon's pose and camera.

    Args:
        mean_keypoints: [68, 3] mean positions (model units; BFM units for the real model).
        id_basis: [68, 3, K_id] identity basis.
        exp_basis: [68, 3, K_exp] expression basis.
    """

    def __init__(self, mean_keypoints: torch.Tensor, id_basis: torch.Tensor, exp_basis: torch.Tensor):
        super().__init__()
        if mean_keypoints.shape != (N_LANDMARKS, 3):
            raise ValueError(f"mean_keypoints must be [68, 3], got {list(mean_keypoints.shape)}")
        for name, basis in (("id_basis", id_basis), ("exp_basis", exp_basis)):
            if basis.ndim != 3 or basis.shape[:2] != (N_LANDMARKS, 3):
                raise ValueError(f"{name} must be [68, 3, K], got {list(basis.shape)}")
        self.register_buffer("mean_keypoints", mean_keypoints.float())
        self.register_buffer("id_basis", id_basis.float())
        self.register_buffer("exp_basis", exp_basis.float())

    @property
    def id_dim(self) -> int:
        return self.id_basis.shape[-1]

    @property
    def exp_dim(self) -> int:
        return self.exp_basis.shape[-1]

    def keypoints_3d(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor) -> torch.Tensor:
        """[..., K_id], [..., K_exp] -> [..., 68, 3] keypoints in model space (no pose)."""
        shape = self.mean_keypoints + torch.einsum("pck,...k->...pc", self.id_basis, id_coeff)
        return shape + torch.einsum("pck,...k->...pc", self.exp_basis, exp_coeff)

    def posed_keypoints(self, id_coeff, exp_coeff, angle, trans) -> torch.Tensor:
        """Keypoints in world space: R(angle) · shape + trans; angle, trans [..., 3] -> [..., 68, 3]."""
        rot = rotation_matrix(angle)
        return torch.einsum("...ij,...pj->...pi", rot, self.keypoints_3d(id_coeff, exp_coeff)) + trans[..., None, :]

    def landmarks(self, id_coeff, exp_coeff, angle, trans, image_size: float = RECON_CROP_SIZE) -> torch.Tensor:
        """Projected landmarks [..., 68, 2] in pixels (x right, y down) of an image_size crop."""
        return project(self.posed_keypoints(id_coeff, exp_coeff, angle, trans), image_size)

    def landmarks_from_coeffs(self, coeffs: torch.Tensor, image_size: float = RECON_CROP_SIZE) -> torch.Tensor:
        """[..., 257 or 260] coefficients -> [..., 68, 2] landmarks (see :meth:`landmarks`)."""
        return self.landmarks(
            coeffs[..., COEFF_SLICES["id"]][..., : self.id_dim],
            coeffs[..., COEFF_SLICES["exp"]][..., : self.exp_dim],
            coeffs[..., COEFF_SLICES["angle"]],
            coeffs[..., COEFF_SLICES["trans"]],
            image_size,
        )


def rotation_matrix(angle: torch.Tensor) -> torch.Tensor:
    """[..., 3] (pitch, yaw, roll) radians -> [..., 3, 3] matrices Rz · Ry · Rx."""
    x, y, z = angle.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return rz @ ry @ rx


def project(points: torch.Tensor, image_size: float = RECON_CROP_SIZE) -> torch.Tensor:
    """World points [..., N, 3] -> pixels [..., N, 2] (y down) of an image_size crop."""
    depth = CAMERA_DISTANCE - points[..., 2:3]
    xy_up = FOCAL * points[..., :2] / depth + CENTER
    xy = torch.stack([xy_up[..., 0], (RECON_CROP_SIZE - 1) - xy_up[..., 1]], -1)
    return xy * (image_size / RECON_CROP_SIZE)


def lip_opening(keypoints: torch.Tensor) -> torch.Tensor:
    """[..., 68, D] keypoints -> [..., 2] distances of the outer (51-57) and inner (62-66) lip pairs."""
    upper = keypoints[..., [a for a, _ in LIP_OPENING_PAIRS], :]
    lower = keypoints[..., [b for _, b in LIP_OPENING_PAIRS], :]
    return (upper - lower).norm(dim=-1)


# ---------------------------------------------------------------------------------------
# The BFM (user-supplied file)

BFM_FIELDS = ("meanshape", "idBase", "exBase", "keypoints")


def load_bfm(path: str | os.PathLike) -> FaceModel:
    """Keypoint model of Deep3DFaceRecon's ``BFM_model_front.mat``.

    The mesh is recentred on the mean of all its vertices, as Deep3DFaceRecon does, before
    the 68 keypoint rows (1-based indices in the file) are taken.
    """
    from scipy.io import loadmat

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(
            "BFM file not found; obtain BFM_model_front.mat as described in Deep3DFaceRecon_pytorch's "
            "README (Basel Face Model 2009 + expression basis) and place it there",
            path,
        )
    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises several types for damaged files
        raise DataError(f"not a readable MATLAB file ({exc})", path) from None
    missing = [f for f in BFM_FIELDS if f not in mat]
    if missing:
        raise DataError(f"missing BFM fields {missing}", path)
    mean = np.asarray(mat["meanshape"], np.float64).reshape(-1, 3)
    n_vertices = mean.shape[0]
    id_base = np.asarray(mat["idBase"], np.float64)
    exp_base = np.asarray(mat["exBase"], np.float64)
    if id_base.shape[0] != 3 * n_vertices or exp_base.shape[0] != 3 * n_vertices:
        raise DataError(f"idBase {id_base.shape} / exBase {exp_base.shape} do not match {n_vertices} vertices", path)
    keypoints = np.asarray(mat["keypoints"]).reshape(-1).astype(np.int64) - 1
    if keypoints.shape != (N_LANDMARKS,) or keypoints.min() < 0 or keypoints.max() >= n_vertices:
        raise DataError(f"keypoints must be 68 vertex indices (1-based) below {n_vertices}", path)
    mean = mean - mean.mean(axis=0, keepdims=True)
    id_kp = id_base.reshape(n_vertices, 3, -1)[keypoints]
    exp_kp = exp_base.reshape(n_vertices, 3, -1)[keypoints]
    return FaceModel(*(torch.from_numpy(a).float() for a in (mean[keypoints], id_kp, exp_kp)))


# ---------------------------------------------------------------------------------------
# The stand-in model (ours; no licence restrictions)

# Expression components 0..15 of the stand-in model, with the FACS action units they mimic.
# Coefficient 1.0 is a clear, strong action; components 16..63 are small smooth deformations.
EXPRESSION_COMPONENTS = (
    "jaw_open",  # AU26/27
    "lip_corner_pull",  # AU12, smile
    "lip_stretch",  # AU20
    "pucker",  # AU18
    "brow_raise",  # AU1+2
    "brow_lower",  # AU4
    "eye_close",  # AU43/45, blink
    "cheek_raise",  # AU6
    "lip_corner_depress",  # AU15
    "upper_lip_raise",  # AU10
    "nose_wrinkle",  # AU9
    "upper_lid_raise",  # AU5
    "lip_press",  # AU24
    "jaw_sideways",  # AU30
    "lower_lip_depress",  # AU16
    "dimple",  # AU14
)
IDENTITY_COMPONENTS = (
    "face_width", "face_length", "jaw_width", "eye_spacing", "eye_size", "nose_length",
    "nose_width", "mouth_width", "lip_thickness", "brow_height", "chin_length", "face_depth",
)


def _stand_in_mean() -> np.ndarray:
    """[68, 3] mean keypoints in BFM-like units (x right, y up, z towards the camera)."""
    pts = np.zeros((N_LANDMARKS, 3))
    # Jaw 0..16: a squarish arc from the right temple (image left) under the chin to the left.
    phi = np.linspace(math.radians(172), math.radians(368), 17)
    c, s = np.cos(phi), np.sin(phi)
    jaw, brows, eyes, mouth = list(JAW), list(BROWS), list(EYES), list(MOUTH)
    pts[jaw, 0] = 0.74 * np.sign(c) * np.abs(c) ** 0.8
    pts[jaw, 1] = 0.08 + 0.98 * np.sign(s) * np.abs(s) ** 1.15
    pts[jaw, 2] = 0.05 - 0.45 * (pts[jaw, 0] / 0.74) ** 2
    # Brows 17..21 (subject's right, image left) and 22..26, arched.
    t = np.linspace(0.0, 1.0, 5)
    brow_x = -0.62 + 0.48 * t
    brow_y = 0.36 + 0.07 * np.sin(np.pi * (0.25 + 0.75 * t))
    pts[list(RIGHT_BROW), 0], pts[list(RIGHT_BROW), 1] = brow_x, brow_y
    pts[list(LEFT_BROW), 0], pts[list(LEFT_BROW), 1] = -brow_x[::-1], brow_y[::-1]
    # Nose bridge 27..30 and base 31..35.
    bridge, base = list(NOSE_BRIDGE), list(NOSE_BASE)
    pts[bridge, 1] = np.linspace(0.27, -0.12, 4)
    pts[bridge, 2] = np.linspace(0.22, 0.46, 4)
    pts[base, 0] = np.linspace(-0.15, 0.15, 5)
    pts[base, 1] = -0.19 - 0.03 * (1 - np.abs(np.linspace(-1, 1, 5)))
    pts[base, 2] = 0.33 - 0.5 * pts[base, 0] ** 2
    # Eyes: corner, two upper lid points, corner, two lower lid points.
    eye = np.array([[-0.13, 0.0], [-0.05, 0.045], [0.05, 0.045], [0.13, 0.0], [0.05, -0.04], [-0.05, -0.04]])
    pts[list(RIGHT_EYE), :2] = eye + [-0.32, 0.2]
    # The left eye mirrors the right in iBUG order: 42 inner corner, 43-44 upper, 45 outer corner.
    pts[list(LEFT_EYE), 0] = -pts[[39, 38, 37, 36, 41, 40], 0]
    pts[list(LEFT_EYE), 1] = pts[[39, 38, 37, 36, 41, 40], 1]
    # Outer lips 48..59 (48 right corner, 51 upper centre, 54 left corner, 57 lower centre).
    outer = [(-0.25, -0.45), (-0.16, -0.405), (-0.06, -0.375), (0.0, -0.385), (0.06, -0.375), (0.16, -0.405),
             (0.25, -0.45), (0.16, -0.52), (0.07, -0.55), (0.0, -0.555), (-0.07, -0.55), (-0.16, -0.52)]
    inner = [(-0.21, -0.45), (-0.08, -0.445), (0.0, -0.446), (0.08, -0.445),
             (0.21, -0.45), (0.08, -0.455), (0.0, -0.454), (-0.08, -0.455)]
    pts[list(OUTER_LIPS), :2], pts[list(INNER_LIPS), :2] = outer, inner
    pts[eyes, 2] = 0.14 - 0.35 * pts[eyes, 0] ** 2
    pts[brows, 2] = 0.2 - 0.35 * pts[brows, 0] ** 2
    pts[mouth, 2] = 0.3 - 0.8 * pts[mouth, 0] ** 2
    return pts


def _displace(field: np.ndarray, idx, dx=0.0, dy=0.0, dz=0.0, weight=1.0) -> None:
    field[list(idx), 0] += dx * weight
    field[list(idx), 1] += dy * weight
    field[list(idx), 2] += dz * weight


def _stand_in_expression_basis(mean: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    basis = np.zeros((N_LANDMARKS, 3, n_components))
    named = [np.zeros((N_LANDMARKS, 3)) for _ in EXPRESSION_COMPONENTS]
    upper_lids, lower_lids = (37, 38, 43, 44), (40, 41, 46, 47)
    corners, inner_corners = (48, 54), (60, 64)
    lower_outer, lower_inner = (55, 56, 57, 58, 59), (65, 66, 67)
    upper_outer, upper_inner = (49, 50, 51, 52, 53), (61, 62, 63)
    jaw_w = np.exp(-((mean[JAW, 0] / 0.35) ** 2))  # chin moves most, temples not at all
    jaw_w = np.where(mean[JAW, 1] < -0.2, jaw_w, 0.0)

    f = named[0]  # jaw_open: lower lip, chin and jaw drop; upper lip lifts a little
    _displace(f, lower_outer, dy=-0.12)
    _displace(f, lower_inner, dy=-0.12)
    _displace(f, corners + inner_corners, dy=-0.05, dx=0.0)
    _displace(f, upper_inner, dy=0.008)
    f[list(JAW), 1] += -0.12 * jaw_w
    f[list(JAW), 2] += -0.02 * jaw_w
    f = named[1]  # lip_corner_pull
    for i, sgn in ((48, -1), (54, 1), (60, -1), (64, 1)):
        _displace(f, [i], dx=0.045 * sgn, dy=0.05)
    for i, sgn in ((49, -1), (53, 1), (59, -1), (55, 1)):
        _displace(f, [i], dx=0.02 * sgn, dy=0.025)
    _displace(f, lower_lids, dy=0.01)
    f = named[2]  # lip_stretch
    for i, sgn in ((48, -1), (54, 1), (60, -1), (64, 1)):
        _displace(f, [i], dx=0.06 * sgn, dy=-0.01)
    _displace(f, upper_outer, dy=-0.012)
    _displace(f, lower_outer, dy=0.012)
    f = named[3]  # pucker: lips gather to the centre and push forward
    f[list(MOUTH), 0] = -0.35 * mean[list(MOUTH), 0]
    f[list(MOUTH), 2] = 0.06
    f = named[4]  # brow_raise
    _displace(f, BROWS, dy=0.07)
    _displace(f, upper_lids, dy=0.012)
    f = named[5]  # brow_lower: brows drop and draw together
    _displace(f, BROWS, dy=-0.045)
    f[list(BROWS), 0] += -0.06 * np.sign(mean[list(BROWS), 0]) * (1 - np.abs(mean[list(BROWS), 0]) / 0.7)
    f = named[6]  # eye_close: upper lids meet the lower lids at 1.0
    _displace(f, upper_lids, dy=-0.07)
    _displace(f, lower_lids, dy=0.015)
    f = named[7]  # cheek_raise
    _displace(f, lower_lids, dy=0.025)
    _displace(f, corners, dy=0.015)
    _displace(f, (49, 53), dy=0.01)
    f = named[8]  # lip_corner_depress
    _displace(f, corners + inner_corners, dy=-0.045)
    _displace(f, (59, 55), dy=-0.015)
    f = named[9]  # upper_lip_raise
    _displace(f, upper_outer + upper_inner, dy=0.03)
    _displace(f, range(31, 36), dy=0.012)
    f = named[10]  # nose_wrinkle
    _displace(f, range(31, 36), dy=0.025)
    _displace(f, (21, 22, 20, 23), dy=-0.025)
    f = named[11]  # upper_lid_raise
    _displace(f, upper_lids, dy=0.03)
    _displace(f, lower_lids, dy=-0.01)
    f = named[12]  # lip_press
    _displace(f, upper_outer, dy=-0.015)
    _displace(f, lower_outer, dy=0.015)
    _displace(f, MOUTH, dz=-0.015)
    f = named[13]  # jaw_sideways
    _displace(f, lower_outer + lower_inner, dx=0.05)
    f[list(JAW), 0] += 0.05 * jaw_w
    f = named[14]  # lower_lip_depress
    _displace(f, lower_outer, dy=-0.04)
    _displace(f, lower_inner, dy=-0.03)
    f = named[15]  # dimple
    for i, sgn in ((48, -1), (54, 1)):
        _displace(f, [i], dx=0.025 * sgn, dz=-0.02)
    for k, f in enumerate(named[:n_components]):
        basis[..., k] = f
    for k in range(len(named), n_components):
        basis[..., k] = _smooth_field(mean, rng, 0.012 / (1 + 0.05 * k))
    return basis


def _smooth_field(mean: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """A random displacement field, quadratic in the mean position, of RMS ``scale``."""
    x, y = mean[:, 0], mean[:, 1]
    monomials = np.stack([np.ones_like(x), x, y, x * y, x**2, y**2], -1)  # [68, 6]
    field = monomials @ rng.normal(size=(6, 3))
    return field * scale / np.sqrt((field**2).mean())


def _stand_in_identity_basis(mean: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    basis = np.zeros((N_LANDMARKS, 3, n_components))
    x, y = mean[:, 0], mean[:, 1]
    lower = np.clip(-(y + 0.1), 0, None)
    eye_c = np.where(x < 0, -0.32, 0.32)
    named = [np.zeros((N_LANDMARKS, 3)) for _ in IDENTITY_COMPONENTS]
    named[0][:, 0] = 0.05 * x  # face_width
    named[1][:, 1] = 0.06 * np.minimum(y, 0)  # face_length
    named[2][list(JAW), 0] = 0.06 * x[list(JAW)] * lower[list(JAW)]  # jaw_width
    named[3][list(EYES + BROWS), 0] = 0.03 * np.sign(x[list(EYES + BROWS)])  # eye_spacing
    for i in EYES:  # eye_size
        named[4][i, :2] = 0.2 * (mean[i, :2] - [eye_c[i], 0.2])
    named[5][list(NOSE[4:]), 1] = -0.04  # nose_length
    named[5][list(NOSE[:4]), 1] = -0.01 * np.arange(4)
    named[6][list(NOSE[4:]), 0] = 0.3 * x[list(NOSE[4:])]  # nose_width
    named[7][list(MOUTH), 0] = 0.2 * x[list(MOUTH)]  # mouth_width
    named[8][list(OUTER_LIPS), 1] = 0.3 * (y[list(OUTER_LIPS)] + 0.45)  # lip_thickness
    named[9][list(BROWS), 1] = 0.035  # brow_height
    named[10][list(JAW), 1] = -0.05 * lower[list(JAW)]  # chin_length
    named[11][:, 2] = 0.06 * (mean[:, 2] - mean[:, 2].mean())  # face_depth
    for k, f in enumerate(named[:n_components]):
        basis[..., k] = f
    for k in range(len(named), n_components):
        basis[..., k] = _smooth_field(mean, rng, 0.015 / (1 + 0.05 * k))
    return basis


def stand_in_face_model(id_dim: int = ID_DIM, exp_dim: int = EXP_DIM, seed: int = 0) -> FaceModel:
    """Our deterministic stand-in for the BFM keypoints (same interface, same dimensions).

    Expression components 0..15 are the named actions of :data:`EXPRESSION_COMPONENTS`,
    identity components 0..11 those of :data:`IDENTITY_COMPONENTS`; the rest are small random
    smooth deformations drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    mean = _stand_in_mean()
    id_basis = _stand_in_identity_basis(mean, id_dim, rng)
    exp_basis = _stand_in_expression_basis(mean, exp_dim, rng)
    mean[:, 1] += 0.22  # centre the keypoints in the crop (the design above puts the eyes at y = 0.2)
    return FaceModel(*(torch.from_numpy(a).float() for a in (mean, id_basis, exp_basis)))


def build_face_model(source: str) -> FaceModel:
    """``"stand_in"`` or a path to ``BFM_model_front.mat`` -> :class:`FaceModel` (config helper)."""
    return stand_in_face_model() if source == "stand_in" else load_bfm(source)
