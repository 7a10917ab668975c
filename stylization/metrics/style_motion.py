"""Landmark-motion metrics of the reference-frame style-transfer paper: D-L, D-V, D-A and the
windowed, style-aware SLD, SLV, SMD (its Eq. 10).

All functions take 68-point iBUG landmark sequences ``[T, 68, 2]`` (pixels, any frame size) or
``[T, 68, 3]`` (the mouth area then uses x, y only), as numpy arrays or tensors, and return a
Python float in **percent**. A frame whose landmarks are not finite (NaN: no face found) takes no
part; the argument order is always ``(generated, reference)``.

The paper (§5.4.1) names the first three after MakeItTalk [51] and gives no formula; our reading:

* **D-L** — landmark distance: the mean over frames and all 68 points of the Euclidean distance
  between generated and reference points, divided by the reference's face width.
* **D-V** — landmark velocity difference: the same on velocities, ``x[t+1] - x[t]`` (per frame).
* **D-A** — difference in the open-mouth area: ``mean_t |A_gen(t) - A_ref(t)|`` over the
  reference's mean area ``mean_t A_ref(t)``, A the area of the inner-lip polygon (points 60-67,
  shoelace formula).

"Face width" is the distance between the jaw ends (points 0 and 16) averaged over the reference's
frames. The percentages of the paper's Table 1 (D-L 2.65 %, D-A 10.53 %) say the distances are
relative, and a width normaliser makes the numbers independent of the frame size; dividing by the
*clip's* mean width and mouth area (not each frame's) keeps a frame with a shut mouth from dividing
by ~0. D-A is normalised by the mouth area, not the face width, so it stays comparable to the
paper's tens of percent.

**SLD** (Eq. 10): split the reference (style) sequence into windows of F frames with stride v,
``W_s = (w^(0:F), w^(v:F+v), ..., w^(κv:F+κv))`` with ``κ = floor((N_s - F) / v)``, and the generated
sequence likewise (with its own length), then

    SLD = 1/|W_s| · sum_{w_s in W_s} min_{w_a in W_a} D-L(w_s, w_a)

— each reference window is matched to the generated window that moves most like it, wherever it is
in time. SLV and SMD are the same with D-V and D-A ("Similarly, we calculate ... SLV ... and SMD").
Inside a window pair, frame f of one is compared with frame f of the other; the normalisers (face
width, mouth area) are the whole reference clip's, so a window score is exactly D-X restricted to
those frames. A window of F frames holds F - 1 velocities. A window pair with no frame present in
both cannot be a minimum; a reference window with no such pair at all is left out of the mean.

**The grid.** The paper gives neither F nor v; the benchmark averages the score over a grid of
(F, v) pairs, :data:`DEFAULT_WINDOW_GRID` (our choice: 8, 16 and 32 frames — about 0.3, 0.6 and
1.3 s at 25 fps, syllable to phrase — with stride a quarter of the window).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stylization.constants import INNER_LIPS, N_LANDMARKS

# (window_frames F, stride_frames v) pairs averaged by sld/slv/smd; our choice, the paper gives none.
DEFAULT_WINDOW_GRID: tuple[tuple[int, int], ...] = ((8, 2), (16, 4), (32, 8))
FACE_WIDTH_POINTS = (0, 16)  # jaw ends: the face width every distance is divided by
OPEN_MOUTH = INNER_LIPS  # 60-67: the polygon whose area is "the open mouth area"
_REF_CHUNK = 32  # reference frames per block of the pairwise error matrix (bounds memory)


def _landmarks(x, name: str) -> torch.Tensor:
    """Validate one sequence -> float64 tensor [T, 68, D] on its own device."""
    t = torch.as_tensor(x).double()
    if t.ndim != 3 or t.shape[1] != N_LANDMARKS or t.shape[2] not in (2, 3):
        raise ValueError(f"{name}: landmarks must be [T, {N_LANDMARKS}, 2 or 3], got {list(t.shape)}")
    if t.shape[0] < 2:
        raise ValueError(f"{name}: needs at least 2 frames (velocities), got {t.shape[0]}")
    return t


def face_width(landmarks) -> torch.Tensor:
    """[T, 68, D] -> [T] distance between the jaw ends (points 0 and 16), NaN where missing."""
    lm = torch.as_tensor(landmarks).double()
    a, b = FACE_WIDTH_POINTS
    return (lm[:, a] - lm[:, b]).norm(dim=-1)


def mouth_area(landmarks) -> torch.Tensor:
    """[T, 68, D] -> [T] area of the inner-lip polygon (points 60-67, x and y), NaN where missing."""
    poly = torch.as_tensor(landmarks).double()[:, list(OPEN_MOUTH), :2]
    x, y = poly[..., 0], poly[..., 1]
    # shoelace: the polygon's signed area; abs so the point order's orientation does not matter
    return 0.5 * (x * y.roll(-1, dims=1) - x.roll(-1, dims=1) * y).sum(1).abs()


def _reference_scales(reference: torch.Tensor) -> tuple[float, float]:
    """The reference clip's mean face width and mean open-mouth area (finite frames only)."""
    width = float(torch.nanmean(face_width(reference)))
    area = float(torch.nanmean(mouth_area(reference)))
    if not np.isfinite(width) or width <= 0:
        raise ValueError("reference: no frame with a finite, non-zero face width (points 0-16)")
    return width, area


def _check_area(area: float, width: float) -> None:
    if not np.isfinite(area) or area <= 1e-8 * width ** 2:
        raise ValueError("reference: the mouth never opens (inner-lip area ~0), so D-A/SMD, relative "
                         "to that area, are undefined; use D-L/D-V or another reference clip")


def _velocities(lm: torch.Tensor) -> torch.Tensor:
    return lm[1:] - lm[:-1]


# ---- pairwise per-frame errors: E[i, j] compares reference frame i with generated frame j ----

def _pairwise_point_error(reference: torch.Tensor, generated: torch.Tensor, scale: float) -> torch.Tensor:
    """[Tr, 68, D], [Tg, 68, D] -> [Tr, Tg]: mean point distance / scale (NaN if either is missing)."""
    rows = [(generated[None] - reference[i:i + _REF_CHUNK, None]).norm(dim=-1).mean(-1)
            for i in range(0, len(reference), _REF_CHUNK)]
    return torch.cat(rows) / scale


def _pairwise_area_error(reference: torch.Tensor, generated: torch.Tensor, scale: float) -> torch.Tensor:
    """[Tr, 68, D], [Tg, 68, D] -> [Tr, Tg]: |A_gen - A_ref| / scale."""
    return (mouth_area(generated)[None, :] - mouth_area(reference)[:, None]).abs() / scale


def _errors(kind: str, reference: torch.Tensor, generated: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The pairwise error matrix in percent for one metric kind, and how many frames a window of F
    frames loses to it (1 for velocities)."""
    width, area = _reference_scales(reference)
    if kind == "position":
        return 100 * _pairwise_point_error(reference, generated, width), 0
    if kind == "velocity":
        return 100 * _pairwise_point_error(_velocities(reference), _velocities(generated), width), 1
    if kind == "area":
        _check_area(area, width)
        return 100 * _pairwise_area_error(reference, generated, area), 0
    raise ValueError(f"kind must be position, velocity or area, got {kind!r}")


def _aligned(kind: str, generated, reference) -> float:
    """D-X on frame-aligned sequences of the same length: the mean of E's diagonal."""
    gen, ref = _landmarks(generated, "generated"), _landmarks(reference, "reference")
    if gen.shape != ref.shape:
        raise ValueError(f"generated and reference must be frame-aligned: {list(gen.shape)} vs {list(ref.shape)}")
    width, area = _reference_scales(ref)
    if kind == "position":
        err = (gen - ref).norm(dim=-1).mean(-1) / width
    elif kind == "velocity":
        err = (_velocities(gen) - _velocities(ref)).norm(dim=-1).mean(-1) / width
    else:
        _check_area(area, width)
        err = (mouth_area(gen) - mouth_area(ref)).abs() / area
    value = float(100 * torch.nanmean(err))
    if not np.isfinite(value):
        raise ValueError("no frame has finite landmarks in both sequences")
    return value


def d_l(generated, reference) -> float:
    """D-L: mean distance of all 68 points, percent of the reference's face width. [T, 68, D] each."""
    return _aligned("position", generated, reference)


def d_v(generated, reference) -> float:
    """D-V: mean distance of the points' per-frame velocities, percent of the reference's face width."""
    return _aligned("velocity", generated, reference)


def d_a(generated, reference) -> float:
    """D-A: mean |open-mouth area difference| over the reference's mean open-mouth area, percent."""
    return _aligned("area", generated, reference)


def window_starts(n_frames: int, window_frames: int, stride_frames: int) -> torch.Tensor:
    """First frames of the windows ``w^(kv : F + kv)``, k = 0..κ, κ = floor((N - F) / v)."""
    return torch.arange(0, n_frames - window_frames + 1, stride_frames)


def windowed(generated, reference, kind: str, window_frames: int, stride_frames: int) -> float:
    """Eq. 10 at one (F, v): mean over reference windows of the minimum over generated windows.

    Args:
        generated, reference: [T_gen, 68, D] and [T_ref, 68, D]; lengths may differ.
        kind: "position" (SLD, on D-L), "velocity" (SLV, on D-V) or "area" (SMD, on D-A).
        window_frames: F, frames per window (>= 2; at most the shorter sequence's length).
        stride_frames: v, frames between window starts (>= 1).
    """
    gen, ref = _landmarks(generated, "generated"), _landmarks(reference, "reference")
    shortest = min(len(gen), len(ref))
    if not 2 <= window_frames <= shortest:
        raise ValueError(f"window_frames={window_frames}: must be in [2, {shortest}] (the shorter sequence "
                         f"has {shortest} frames); use a smaller window or longer clips")
    if stride_frames < 1:
        raise ValueError(f"stride_frames={stride_frames}: must be >= 1")
    err, lost = _errors(kind, ref, gen)
    n = window_frames - lost  # per-frame errors in one window
    offsets = torch.arange(n, device=err.device)
    rows = (window_starts(len(ref), window_frames, stride_frames).to(err.device)[:, None] + offsets)  # [Ks, n]
    cols = (window_starts(len(gen), window_frames, stride_frames).to(err.device)[:, None] + offsets)  # [Ka, n]
    scores = torch.stack([torch.nanmean(err[r[None, :], cols], dim=1) for r in rows])  # [Ks, Ka]
    # a window pair without a frame present in both cannot be the best match
    best = torch.nan_to_num(scores, nan=float("inf")).amin(1)
    best = best[torch.isfinite(best)]
    if best.numel() == 0:
        raise ValueError("no reference window shares a frame with finite landmarks with any generated window")
    return float(best.mean())


def _grid_mean(kind: str, generated, reference, grid: Sequence[tuple[int, int]]) -> float:
    if len(grid) == 0:
        raise ValueError("grid: needs at least one (window_frames, stride_frames) pair")
    return float(np.mean([windowed(generated, reference, kind, int(f), int(v)) for f, v in grid]))


def sld(generated, reference, grid: Sequence[tuple[int, int]] = DEFAULT_WINDOW_GRID) -> float:
    """SLD, Eq. 10 on D-L, averaged over the (window_frames, stride_frames) pairs of ``grid``; percent."""
    return _grid_mean("position", generated, reference, grid)


def slv(generated, reference, grid: Sequence[tuple[int, int]] = DEFAULT_WINDOW_GRID) -> float:
    """SLV, Eq. 10 on D-V, averaged over ``grid``; percent."""
    return _grid_mean("velocity", generated, reference, grid)


def smd(generated, reference, grid: Sequence[tuple[int, int]] = DEFAULT_WINDOW_GRID) -> float:
    """SMD, Eq. 10 on D-A, averaged over ``grid``; percent."""
    return _grid_mean("area", generated, reference, grid)



STYLE_METRICS = {"sld": sld, "slv": slv, "smd": smd}


def speaker_separation(clips: dict[str, list], pairs: int = 6, seed: int = 0) -> dict[str, float]:
    """Whether speakers have motion styles these metrics can tell apart: per speaker, ``pairs`` times,
    a clip (the reference) is compared with another clip of the same speaker (within) and with a clip
    of another speaker (between). ``clips``: speaker -> landmark sequences [T, 68, 2|3] (>= 2 each;
    2+ speakers). Returns, per metric, the mean within and between scores (percent) and
    ``<metric>_separated``: the share of draws where between > within (0.5: indistinguishable).
    SLD also sees face shape (identity), SLV and SMD only motion."""
    speakers = sorted(clips)
    if len(speakers) < 2 or any(len(clips[s]) < 2 for s in speakers):
        raise ValueError("speaker_separation needs at least 2 speakers with at least 2 clips each")
    rng = np.random.default_rng(seed)
    scores: dict[str, list[tuple[float, float]]] = {k: [] for k in STYLE_METRICS}
    for s in speakers:
        own = clips[s]
        for _ in range(pairs):
            ref, same = rng.choice(len(own), 2, replace=False)
            other = speakers[(speakers.index(s) + 1 + int(rng.integers(len(speakers) - 1))) % len(speakers)]
            stranger = clips[other][int(rng.integers(len(clips[other])))]
            for name, metric in STYLE_METRICS.items():
                scores[name].append((metric(own[same], own[ref]), metric(stranger, own[ref])))
    out: dict[str, float] = {}
    for name, rows in scores.items():
        within, between = np.array(rows).T
        out.update({f"{name}_within": round(float(within.mean()), 4), f"{name}_between": round(float(between.mean()), 4),
                    f"{name}_separated": round(float((between > within).mean()), 4)})
    return out
