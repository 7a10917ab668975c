"""Clip-level action-unit intensities: from OpenFace's output, or estimated from 68 landmarks.

The paper turns OpenFace AU intensities into emotion texts
(:func:`stylization.text.emotion_text.describe_aus`). Both sources here return what that
function reads: {"AU12": intensity, ...}, one value per clip on OpenFace's 0-5 scale.

* :func:`read_openface_csv` reads OpenFace 2's ``FeatureExtraction`` CSV: the mean of each
  ``AUxx_r`` column over the frames OpenFace tracked (``success`` 1, ``confidence`` >= 0.8).
  The paper does not say how it pools frames; the mean is what a clip-level label needs.
* :func:`geometric_aus` estimates eleven AUs from the landmark track alone. These are geometric
  approximations (distances between landmarks compared with a neutral face), not FACS-coded
  intensities: they move with the action they name, but a real OpenFace run gives other
  numbers. Use them when OpenFace is not available, e.g. for the synthetic corpus or a quick
  annotation of MEAD.

Geometry. Each frame's landmarks are put in a face frame: origin between the outer eye corners
(points 36 and 45), x along the eye line, y perpendicular to it and up, lengths in units of the
inter-ocular distance (IOD, 36 to 45), so the scale and the head's roll do not matter. With
coefficients [T, 260] (a fit of the clip) the vertical features are also corrected for pitch
and yaw foreshortening (vertical · cos(yaw) / cos(pitch)). Nine features follow
(:data:`FEATURES`); each AU is a gain times a feature's change from the neutral reference (see
:data:`GAINS` and :func:`frame_intensities`), clipped to [0, 5] per frame and averaged over
the clip.

The gains are calibrated on the stand-in face model
(:func:`~stylization.data.face_model.stand_in_face_model`): its named expression component at
1.0 reads 5, as :func:`stylization.data.synthetic.profiles.au_intensities` scores it. The
neutral reference is the same features measured on the speaker's neutral clip (the median
over its frames, :func:`reference_features`); without one, :data:`DEFAULT_NEUTRAL` (the
stand-in model's mean face) stands in, which is much less accurate for real faces, whose
neutral brow height and lip shape vary from person to person by as much as a weak action.

Measured on the synthetic corpus (64 px, each speaker's level-1 neutral clip the reference;
tests/test_preprocess_aus.py): the estimates correlate 0.87-0.99 over the clips with the
intensities the corpus was written with; happy clips read AU12 4.0 against 0.1 for neutral,
surprised AU01/02/05 about 3.8, sad AU15 3.5, and a neutral clip stays below 1 (the texts'
threshold) on every AU but the speech-driven AU25 and AU26.
"""

from __future__ import annotations

import csv
import os
from typing import Mapping

import numpy as np

from stylization.constants import COEFF_SLICES, INNER_LIP_PAIRS, N_LANDMARKS
from stylization.errors import DataError

# ---------------------------------------------------------------------------------------
# OpenFace 2 CSV

MIN_CONFIDENCE = 0.8  # OpenFace's tracking confidence below which a frame is left out


def read_openface_csv(path: str | os.PathLike) -> dict[str, float]:
    """OpenFace 2 ``FeatureExtraction`` CSV -> {"AU01": mean intensity (0-5), ...}.

    Column names are stripped (OpenFace 2.0-2.2 write ", AU01_r" with a space). The rows used are
    those with ``success`` 1 and, when the column exists, ``confidence`` >= :data:`MIN_CONFIDENCE`.
    Only intensity columns (``AUxx_r``) are read; presence columns (``AUxx_c``) are ignored.

    Raises:
        DataError: the file is missing or unreadable, has no ``AUxx_r`` columns, or no row passes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("OpenFace CSV not found", path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"not a readable CSV file ({exc})", path) from None
    if not rows:
        raise DataError("empty file; expected OpenFace's header line and one row per frame", path)
    header = [name.strip() for name in rows[0]]
    au_columns = {name[:-2]: i for i, name in enumerate(header) if name.startswith("AU") and name.endswith("_r")}
    if not au_columns:
        raise DataError("no AU intensity columns (AUxx_r); run FeatureExtraction with -aus", path)
    body = [r for r in rows[1:] if r]
    short = next((n for n, r in enumerate(body, 1) if len(r) < len(header)), None)
    if short is not None:
        raise DataError(f"row {short} after the header has fewer fields than it ({len(header)})", path)
    kept = [r for r in body if _tracked(r, header, path)]
    if not kept:
        raise DataError(f"no frame with success == 1 and confidence >= {MIN_CONFIDENCE} in {len(rows) - 1} rows",
                        path)
    return {au: float(np.mean([_number(r[i], path) for r in kept])) for au, i in sorted(au_columns.items())}


def _tracked(row: list[str], header: list[str], path: str) -> bool:
    """Whether OpenFace tracked the face in this row (success 1, confidence high enough)."""
    fields = dict(zip(header, row))
    if "success" in fields and _number(fields["success"], path) != 1:
        return False
    return "confidence" not in fields or _number(fields["confidence"], path) >= MIN_CONFIDENCE


def _number(text: str, path: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{text.strip()!r} is not a number", path) from None


# ---------------------------------------------------------------------------------------
# Landmark geometry

AU_NAMES = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU12", "AU15", "AU20", "AU25", "AU26")
FEATURES = ("inner_brow", "outer_brow", "brow_gap", "eye_open", "lower_lid", "corner_rise", "mouth_width",
            "lip_gap", "chin_drop")
HORIZONTAL = ("brow_gap", "mouth_width")  # the other features are vertical distances

# Features of the stand-in model's mean face (zero identity and expression, frontal, at the synthetic
# corpus's framing: translation (0, -0.12, -3)), IOD units.
DEFAULT_NEUTRAL: dict[str, float] = {
    "inner_brow": 0.2027, "outer_brow": 0.2443, "brow_gap": 0.3141, "eye_open": 0.0947, "lower_lid": -0.0444,
    "corner_rise": 0.0242, "mouth_width": 0.5634, "lip_gap": 0.0106, "chin_drop": 1.2209,
}
# AU intensity per IOD of feature change: 5 / (the change the stand-in's component at 1.0 makes in the
# AU's feature of frame_intensities), measured at the framing above. Two AUs have no stand-in component:
# AU07 reads 5 when the eye opening halves, AU25 when the inner lips part by a third of a full jaw drop.
GAINS: dict[str, float] = {
    "AU01": 63.7, "AU02": 64.2, "AU04": 31.6, "AU05": 112.2, "AU06": 179.5, "AU07": 105.6,
    "AU12": 61.2, "AU15": 98.6, "AU20": 37.0, "AU25": 103.6, "AU26": 36.2,
}
SMILE_WIDENING = 0.25  # AU12 adds this share of the mouth widening to the corners' rise
WIDTH_PER_RISE = 1.8  # a smile widens the mouth ~1.8x as much as it lifts the corners; AU20 discounts that
BLINK_OPENING = 0.5  # eye opening below this share of the reference: a blink (AU45), left out of AU05/06/07
EYE_AUS = ("AU05", "AU06", "AU07")


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[T, 68, 2] pixels (y down) -> (X, Y), each [T, 68], in IOD units of the face frame (y up)."""
    right, left = landmarks[:, 36], landmarks[:, 45]  # outer eye corners (subject's right, left)
    axis = left - right
    iod = np.linalg.norm(axis, axis=-1, keepdims=True)  # [T, 1]
    along = axis / iod
    up = np.stack([along[:, 1], -along[:, 0]], -1)  # the eye line turned a quarter, pointing up in y-down pixels
    rel = landmarks - (right + left)[:, None] / 2
    return np.einsum("tpc,tc->tp", rel, along) / iod, np.einsum("tpc,tc->tp", rel, up) / iod


def landmark_features(landmarks: np.ndarray, coeffs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """[T, 68, 2] landmarks (any pixel scale) -> {feature: [T]} in IOD units (NaN where a frame is not finite).

    ``coeffs`` [T, 260] (or 257), when given, corrects the vertical features for pitch and yaw.
    """
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks must be [T, {N_LANDMARKS}, 2], got {list(landmarks.shape)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        x, y = face_frame(landmarks)
    upper_inner, lower_inner = [a for a, _ in INNER_LIP_PAIRS], [b for _, b in INNER_LIP_PAIRS]
    mean = lambda a, idx: a[:, list(idx)].mean(1)  # noqa: E731
    out = {
        "inner_brow": mean(y, (20, 21, 22, 23)) - mean(y, (39, 42)),  # AU01: inner brows over the inner eye corners
        "outer_brow": mean(y, (17, 18, 25, 26)) - mean(y, (36, 45)),  # AU02: outer brows over the outer corners
        "brow_gap": x[:, 22] - x[:, 21],  # AU04: the inner brow ends drawn together
        "eye_open": mean(y, (37, 38, 43, 44)) - mean(y, (40, 41, 46, 47)),  # AU05 / AU07: upper over lower lids
        "lower_lid": mean(y, (40, 41, 46, 47)) - mean(y, (36, 39, 42, 45)),  # AU06: lower lids over the corners
        "corner_rise": mean(y, (48, 54)) - mean(y, (51, 57)),  # AU12 / AU15: lip corners over the lips' centre
        "mouth_width": x[:, 54] - x[:, 48],  # AU20 (and AU12)
        "lip_gap": mean(y, upper_inner) - mean(y, lower_inner),  # AU25: inner lips apart
        "chin_drop": -y[:, 8],  # AU26: chin below the eye line
    }
    if coeffs is not None:
        factor = _foreshortening(np.asarray(coeffs, np.float64), len(landmarks))
        out = {k: v if k in HORIZONTAL else v * factor for k, v in out.items()}
    return out


def _foreshortening(coeffs: np.ndarray, n_frames: int) -> np.ndarray:
    """[T] factor cos(yaw) / cos(pitch) that turns a vertical length over the IOD into its frontal value."""
    if coeffs.ndim != 2 or len(coeffs) != n_frames or coeffs.shape[1] < COEFF_SLICES["angle"].stop:
        raise ValueError(f"coeffs must be [{n_frames}, 260] (or 257) to match the landmarks, got {list(coeffs.shape)}")
    angle = coeffs[:, COEFF_SLICES["angle"]]
    return np.cos(angle[:, 1]) / np.cos(angle[:, 0])


def reference_features(landmarks: np.ndarray, coeffs: np.ndarray | None = None) -> dict[str, float]:
    """A neutral clip's landmarks [T, 68, 2] -> {feature: median over its finite frames} (IOD units).

    The median keeps blinks and the loudest syllables from moving the reference.
    """
    feats = landmark_features(landmarks, coeffs)
    if not np.isfinite(feats["eye_open"]).any():
        raise DataError(f"none of the {len(landmarks)} frames of the neutral clip has finite landmarks")
    return {k: float(np.nanmedian(v)) for k, v in feats.items()}


def frame_intensities(feats: Mapping[str, np.ndarray], neutral: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Features {name: [T]} and a neutral reference -> unclipped per-frame AU intensities {AU: [T]}."""
    d = {k: np.asarray(feats[k]) - neutral[k] for k in FEATURES}
    rise, width = d["corner_rise"], d["mouth_width"]
    g = GAINS
    au12 = np.where(rise > 0, g["AU12"] * (rise + SMILE_WIDENING * width), 0.0)
    return {
        "AU01": g["AU01"] * d["inner_brow"],
        "AU02": g["AU02"] * d["outer_brow"],
        "AU04": g["AU04"] * (-d["brow_gap"] - d["inner_brow"]),  # brows drawn together and lowered
        "AU05": g["AU05"] * d["eye_open"],
        "AU06": np.minimum(g["AU06"] * d["lower_lid"], au12),  # a cheek raise shows with the lip corners up
        "AU07": g["AU07"] * -d["eye_open"],
        "AU12": au12,
        "AU15": g["AU15"] * -rise,
        "AU20": g["AU20"] * (width - WIDTH_PER_RISE * np.maximum(rise, 0.0)),
        "AU25": g["AU25"] * d["lip_gap"],
        "AU26": g["AU26"] * (d["lip_gap"] + d["chin_drop"]) / 2,
    }


def geometric_aus(landmarks: np.ndarray, coeffs: np.ndarray | None = None,
                  neutral: Mapping[str, float] | None = None) -> dict[str, float]:
    """A clip's landmark track [T, 68, 2] -> {AU: clip intensity on the 0-5 scale} (see the module docstring).

    Args:
        landmarks: [T, 68, 2] pixels of any scale; frames with non-finite values are skipped.
        coeffs: optional [T, 260] coefficients of the clip (only the angles are read).
        neutral: the speaker's neutral reference (:func:`reference_features` of a neutral clip);
            None uses :data:`DEFAULT_NEUTRAL`.

    Per frame: intensity = clip(gain · (feature - reference), 0, 5) (:func:`frame_intensities`),
    then the mean over the clip's finite frames; blink frames (eye opening below
    :data:`BLINK_OPENING` of the reference) are left out of AU05, AU06 and AU07.
    """
    reference = dict(DEFAULT_NEUTRAL if neutral is None else neutral)
    missing = [k for k in FEATURES if k not in reference]
    if missing:
        raise ValueError(f"neutral reference lacks features {missing}; build it with reference_features()")
    feats = landmark_features(landmarks, coeffs)
    finite = np.isfinite(np.stack([feats[k] for k in FEATURES])).all(0)
    # frames without landmarks read as neutral (no NaN warnings), then take no part in the means
    feats = {k: np.where(finite, v, reference[k]) for k, v in feats.items()}
    if not finite.any():
        raise DataError(f"none of the {len(finite)} frames has finite landmarks; no AUs to estimate")
    open_eyes = finite & (feats["eye_open"] >= BLINK_OPENING * reference["eye_open"])
    out = {}
    for au, per_frame in frame_intensities(feats, reference).items():
        keep = open_eyes if au in EYE_AUS else finite
        out[au] = float(np.clip(per_frame[keep], 0.0, 5.0).mean()) if keep.any() else 0.0
    return out
