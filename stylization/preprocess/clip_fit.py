"""3DMM coefficients for a whole clip: one batched fit of the face model to a 68-landmark track.

:func:`~stylization.preprocess.fitting.fit_coefficients` fits one frame in 0.2-0.5 s; MEAD's
three million frames would take weeks. :func:`fit_clip` fits all T frames of a clip at once,
vectorised over frames:

* parameters: identity [K_id], one for the clip (or held fixed, see below); expression
  [T, K_exp], angle [T, 3] (radians) and trans [T, 3] (face-model units) per frame;
* loss (all terms dimensionless)::

      1/T Σ_t mean_p |proj(t, p) - target(t, p)|² / scale²           reprojection, as fit_coefficients
      + 1/T (id_prior · |id|² + exp_prior · Σ_t |exp_t|²)             L2 priors
      + smooth · 1/T Σ_t (|Δ²exp_t|² + |Δ²angle_t|² + |Δ²trans_t|²)   temporal prior

  ``scale`` is the standard deviation of the clip's landmark coordinates (224-crop pixels) and
  Δ² the second difference over three consecutive frames. The identity prior counts once per
  clip (the identity is seen T times), the expression prior once per frame. For one frame this
  is the loss of ``fit_coefficients``; with its priors (1e-3, 1e-3) the two agree to 0.002 px;
* schedule: each frame's translation starts where the mean face's centroid and size match its
  landmarks (closed form), then L-BFGS on the pose alone (the shape held), then L-BFGS on all
  parameters, each variable divided by a step scale from the loss's curvature (:func:`_step_scales`).
  Without that scaling L-BFGS needs about four times the iterations.

Frames whose landmarks are not finite (no face detected) take no part in the fit; their
expression and pose are interpolated linearly in time from the nearest fitted frames (held
constant before the first and after the last one), and they share the clip's identity.

**Identity.** From landmarks alone a constant expression offset and an identity are hard to tell
apart: fitting the identity of an emotional clip moves part of its emotion (a clip-long smile,
raised brows) into the identity. Fit the speaker's neutral clip first and pass its identity to
the other clips (``identity=``); on the stand-in model that lowered the mean expression error
over five emotions from 0.70 to 0.54 px (a surprised clip, brows raised throughout: 1.1 to 0.7 px).

**Measured** on synthetic clips of the stand-in model (the corpus's speakers, emotions at level 3,
speech-driven mouth, blinks, head motion; 256 px landmarks with 0.5 px noise; defaults, float32):
100 frames take 0.15-0.30 s on this project's 2-core CPU machine, ``frames_per_second`` ≈ 350-650
(one thread; under load, two threads can stall), against 0.2-0.5 s per frame for
``fit_coefficients``; 0.23-0.31 px from the clean landmarks (the per-frame fit: 0.9-1.3 px, its
identity prior keeps the face near the mean), jaw-open within 0.15 and correlated 0.995 with the
truth, angles within 0.03 rad. float64 gives the same numbers, about 15 % slower. The depth trades
against the face's size (identity) and is not well determined from landmarks.

Weights: ``exp_prior`` 1e-4 (``fit_coefficients`` uses 1e-3, which halves a clip's emotion: a
smile of 1.05 came out near 0.5; the expression error was 0.91 px at 1e-3, 0.77 at 1e-4 and no
better below); ``smooth`` :data:`DEFAULT_SMOOTH`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from stylization.constants import COEFF_DIM, COEFF_SLICES, N_LANDMARKS, RECON_CROP_SIZE
from stylization.data.face_model import CAMERA_DISTANCE, CENTER, FOCAL, FaceModel, project
from stylization.errors import DataError

# The weight of the temporal prior; a second difference is in coefficient units per frame² (radians and
# face-model units for the pose). Measured expression error (px, 100-frame clips, 0.5 px noise): 0.714 at
# 0, 0.711 at 1e-5, 0.701 at 1e-4, 0.862 at 1e-3 (blinks and syllables start to be flattened), 1.34 at 1e-2.
DEFAULT_SMOOTH = 1e-4


def fit_clip(face_model: FaceModel, landmarks: np.ndarray, size: int, *, identity: np.ndarray | None = None,
             steps: int = 50, pose_steps: int = 10, id_prior: float = 1e-3, exp_prior: float = 1e-4,
             smooth: float = DEFAULT_SMOOTH, dtype: torch.dtype = torch.float32,
             device: str | torch.device = "cpu") -> np.ndarray:
    """Landmark track [T, 68, 2] (pixels of a size×size crop) -> coefficients [T, 260] (float32).

    Args:
        face_model: the keypoint model; the fit runs on a copy of it in ``dtype`` on ``device``,
            so the caller's model is left as it was.
        landmarks: [T, 68, 2] pixels (x right, y down); a frame with any non-finite value is
            treated as missing (see the module docstring).
        size: side of the crop the landmarks are in, pixels (the crop columns become
            (size / 224, 0, 0), as in ``fit_coefficients``).
        identity: [80] identity coefficients to hold fixed (e.g. those of a fit of the speaker's neutral
            clip), or None to fit them (see the module docstring for why a fixed one is better).
        steps: L-BFGS iterations on all parameters.
        pose_steps: L-BFGS iterations on the pose alone before that.
        id_prior, exp_prior: weights of the L2 priors on identity and expression.
        smooth: weight of the second-difference prior on expression and pose (:data:`DEFAULT_SMOOTH`).
        dtype: float32 is accurate to well under a pixel (see tests/test_preprocess_clip_fit.py).

    Returns:
        [T, 260] rows in the layout of :data:`~stylization.constants.COEFF_SLICES`: id, exp,
        angle, trans and crop filled, tex and gamma zero.
    """
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (N_LANDMARKS, 2) or len(landmarks) == 0:
        raise ValueError(f"landmarks must be [T, {N_LANDMARKS}, 2] with T >= 1, got {list(landmarks.shape)}")
    valid = np.isfinite(landmarks).all(axis=(1, 2))
    if not valid.any():
        raise DataError(f"none of the {len(landmarks)} frames has finite landmarks; nothing to fit")
    if identity is not None:
        identity = np.asarray(identity, np.float64).reshape(-1)
        if identity.size < face_model.id_dim or not np.isfinite(identity).all():
            raise ValueError(f"identity must be {face_model.id_dim} finite coefficients, got {identity.size} values")
    fm = copy.deepcopy(face_model).to(device=device, dtype=dtype)
    target = torch.as_tensor(landmarks[valid] * (RECON_CROP_SIZE / size), dtype=dtype, device=device)
    fit = _ClipFit(fm, target, _smooth_triples(np.flatnonzero(valid)), identity, id_prior, exp_prior, smooth)
    fit.run(pose_steps, steps)
    return _rows(fit, valid, size)


def _smooth_triples(frames: np.ndarray) -> torch.Tensor:
    """Positions k (in the list of fitted frames) where frames k, k+1, k+2 are consecutive in time."""
    k = np.flatnonzero((frames[2:] - frames[:-2]) == 2) if len(frames) > 2 else np.zeros(0, np.int64)
    return torch.as_tensor(k, dtype=torch.long)


class _ClipFit:
    """The parameters and loss of one clip's fit (N fitted frames).

    L-BFGS sees each parameter divided by its step scale (:func:`_step_scales`), so that the loss
    curves about as much along every variable: the expression components move the landmarks by
    amounts a hundred times apart, and an unscaled fit spends most of its iterations on that.
    """

    def __init__(self, fm: FaceModel, target: torch.Tensor, triples: torch.Tensor, identity: np.ndarray | None,
                 id_prior: float, exp_prior: float, smooth: float):
        self.fm, self.target, self.triples = fm, target, triples.to(target.device)
        self.id_prior, self.exp_prior, self.smooth = id_prior, exp_prior, smooth
        self.scale = float(target.std())
        n, like = len(target), dict(dtype=target.dtype, device=target.device)
        start = {"exp": torch.zeros(n, fm.exp_dim, **like), "angle": torch.zeros(n, 3, **like),
                 "trans": _initial_trans(fm, target)}
        if identity is None:
            start["ident"] = torch.zeros(fm.id_dim, **like)
            self.fixed_ident = None
        else:
            self.fixed_ident = torch.as_tensor(np.asarray(identity)[: fm.id_dim], **like)
        self.step = _step_scales(fm, start["trans"], self.scale, id_prior, exp_prior, n)
        self.free = {k: (v / self.step[k]).requires_grad_(True) for k, v in start.items()}

    def value(self, name: str) -> torch.Tensor:
        """A parameter in model units (identity [K_id], expression [N, K_exp], angle and trans [N, 3])."""
        if name == "ident" and self.fixed_ident is not None:
            return self.fixed_ident
        return self.free[name] * self.step[name]

    def loss(self, with_shape: bool = True) -> torch.Tensor:
        ident, exp, angle, trans = (self.value(k) for k in ("ident", "exp", "angle", "trans"))
        if not with_shape:
            ident, exp = ident.detach(), exp.detach()
        pred = self.fm.landmarks(ident, exp, angle, trans)  # [N, 68, 2], 224-crop pixels
        n = len(self.target)
        data = ((pred - self.target) / self.scale).pow(2).sum(-1).mean()
        prior = (self.id_prior * ident.pow(2).sum() + self.exp_prior * exp.pow(2).sum()) / n
        return data + prior + self.smooth * self._roughness(torch.cat([exp, angle, trans], -1)) / n

    def _roughness(self, track: torch.Tensor) -> torch.Tensor:
        """Σ over consecutive triples of |Δ²track|² (track [N, D])."""
        k = self.triples
        if len(k) == 0:
            return track.new_zeros(())
        return (track[k] - 2 * track[k + 1] + track[k + 2]).pow(2).sum()

    def run(self, pose_steps: int, steps: int) -> None:
        pose = [self.free["angle"], self.free["trans"]]
        if pose_steps > 0:
            _lbfgs(pose, lambda: self.loss(with_shape=False), pose_steps)
        if steps > 0:
            _lbfgs(list(self.free.values()), self.loss, steps)


def _step_scales(fm: FaceModel, trans: torch.Tensor, scale: float, id_prior: float, exp_prior: float,
                 n: int) -> dict[str, torch.Tensor]:
    """1 / sqrt(the loss's Gauss-Newton curvature) along each variable, for the mean face seen frontally.

    A model-space displacement d of a keypoint moves its landmark by about (FOCAL / depth) · d_xy
    pixels, so a variable whose displacement field is d_p costs 2 · mean_p |px · d_p|² / scale² per
    unit² in a frame's reprojection term; the per-frame variables carry the 1 / N of the frame mean.
    """
    mean = fm.mean_keypoints  # [68, 3]
    px = FOCAL / (CAMERA_DISTANCE - trans[:, 2].mean() - mean[:, 2].mean())
    gain = 2 * (px / scale) ** 2
    x, y, z = mean.unbind(-1)
    curvature = {
        "ident": gain * fm.id_basis[:, :2].pow(2).sum(1).mean(0) + 2 * id_prior / n,
        "exp": (gain * fm.exp_basis[:, :2].pow(2).sum(1).mean(0) + 2 * exp_prior) / n,
        # rotations at zero: pitch moves a point by (0, -z, y), yaw by (z, 0, -x), roll by (-y, x, 0)
        "angle": gain * torch.stack([z.pow(2).mean(), z.pow(2).mean(), (x.pow(2) + y.pow(2)).mean()]) / n,
        # depth changes the size: a point moves by its distance from the centre times dz / depth
        "trans": gain * torch.stack([px.new_tensor(1.0), px.new_tensor(1.0),
                                     (x.pow(2) + y.pow(2)).mean() * (px / FOCAL) ** 2]) / n,
    }
    return {k: (1 / v.sqrt()).detach() for k, v in curvature.items()}


def _initial_trans(fm: FaceModel, target: torch.Tensor) -> torch.Tensor:
    """[N, 68, 2] landmarks (224 px) -> [N, 3] translations that put the mean face, unrotated, on them.

    The projected size of the face scales as 1 / depth, so the ratio of the landmarks' spread to
    the mean face's spread at zero translation gives each frame's depth; the centroid then gives
    x and y (the projection inverted at that depth, y flipped back up).
    """
    with torch.no_grad():
        mean = fm.mean_keypoints  # [68, 3]
        at_zero = project(mean)  # [68, 2]
        spread = lambda p: (p - p.mean(-2, keepdim=True)).pow(2).sum(-1).mean(-1).sqrt()  # noqa: E731
        centre = mean.mean(0)
        depth0 = CAMERA_DISTANCE - centre[2]
        depth = depth0 * spread(at_zero) / spread(target)  # [N]
        centroid = target.mean(-2)  # [N, 2]
        tx = (centroid[:, 0] - CENTER) * depth / FOCAL - centre[0]
        ty = ((RECON_CROP_SIZE - 1 - CENTER) - centroid[:, 1]) * depth / FOCAL - centre[1]
        return torch.stack([tx, ty, depth0 - depth], -1)


def _lbfgs(params: list[torch.Tensor], loss_fn, max_iter: int) -> None:
    """Minimise ``loss_fn()`` over ``params`` with L-BFGS (strong-Wolfe line search), in place."""
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def _rows(fit: _ClipFit, valid: np.ndarray, size: int) -> np.ndarray:
    """The fitted parameters -> [T, 260] rows, missing frames interpolated in time."""
    fitted = np.flatnonzero(valid)
    rows = np.zeros((len(valid), COEFF_DIM), np.float32)
    rows[:, COEFF_SLICES["id"]][:, : fit.fm.id_dim] = fit.value("ident").detach().cpu().numpy()
    for name in ("exp", "angle", "trans"):
        track = fit.value(name).detach().cpu().double().numpy()  # [N, D]
        full = np.stack([np.interp(np.arange(len(valid)), fitted, track[:, d]) for d in range(track.shape[1])], 1)
        rows[:, COEFF_SLICES[name]][:, : track.shape[1]] = full
    rows[:, COEFF_SLICES["crop"]] = (size / RECON_CROP_SIZE, 0.0, 0.0)
    return rows
