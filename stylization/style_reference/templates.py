"""Key motion templates and style reference retrieval (§3.2, §5.4.3).

The paper retrieves a character's **Style Reference Images** from its video with four key motion
templates named after syllable types: two closed syllables, "None" and "M", told apart by mouth
shape, and two open ones, "R" and "O", with very different mouth motion (its Fig. 6 draws them; no
numbers are given). Our reading, in two mouth-shape numbers per frame (:func:`mouth_descriptors`):
the inner-lip opening and the mouth-corner width, both over the face width:

========  ==========================  =========================================
template  mouth                        target (quantiles of the character's own)
========  ==========================  =========================================
none      closed, relaxed              opening q05, width q25
m         closed, lips pressed wide    opening q05, width q90
r         half open, narrow (rounded)  opening q60, width q10
o         wide open                    opening q97, width q50
========  ==========================  =========================================

Targets are quantiles of the character's *own* frames, so the four references span that character's
motion range ("popular motion range and behavior") whatever its habits. Retrieval is an exact
nearest-neighbour search (faiss ``IndexFlatL2``; the paper's similarity search [8]) of each target
among the frames' descriptors standardised by their spread; a frame is used once.
:func:`match_templates` gives each frame the nearest template (the style-aware generator's matched
pattern I_m).
"""

from __future__ import annotations

import numpy as np

from stylization.constants import INNER_LIPS

TEMPLATES = ("none", "m", "r", "o")
TEMPLATE_QUANTILES = {"none": (0.05, 0.25), "m": (0.05, 0.90), "r": (0.60, 0.10), "o": (0.97, 0.50)}
LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip points facing each other
MOUTH_CORNERS = (48, 54)
JAW_ENDS = (0, 16)
assert all(a in INNER_LIPS and b in INNER_LIPS for a, b in LIP_PAIRS)


def mouth_descriptors(landmarks) -> np.ndarray:
    """Landmarks [T, 68, 2|3] (pixels or any unit; x, y used) -> [T, 2]: (opening, width) over the face width."""
    p = np.asarray(landmarks, np.float64)[..., :2]
    if p.ndim != 3 or p.shape[1] != 68:
        raise ValueError(f"landmarks must be [T, 68, 2|3], got {list(p.shape)}")
    face = np.linalg.norm(p[:, JAW_ENDS[0]] - p[:, JAW_ENDS[1]], axis=-1)
    opening = np.mean([np.linalg.norm(p[:, a] - p[:, b], axis=-1) for a, b in LIP_PAIRS], axis=0)
    width = np.linalg.norm(p[:, MOUTH_CORNERS[0]] - p[:, MOUTH_CORNERS[1]], axis=-1)
    return np.stack([opening / face, width / face], -1)


def template_targets(descriptors: np.ndarray) -> np.ndarray:
    """A character's frame descriptors [T, 2] -> the four templates' targets [4, 2] (TEMPLATES order)."""
    d = _finite(descriptors)
    return np.array([[np.quantile(d[:, j], q[j]) for j in range(2)] for q in (TEMPLATE_QUANTILES[t] for t in TEMPLATES)])


def _finite(descriptors: np.ndarray) -> np.ndarray:
    d = np.asarray(descriptors, np.float64)
    d = d[np.isfinite(d).all(1)]
    if len(d) < len(TEMPLATES):
        raise ValueError(f"need at least {len(TEMPLATES)} frames with a face to retrieve style references, got {len(d)}")
    return d


def _spread(descriptors: np.ndarray) -> np.ndarray:
    return np.maximum(_finite(descriptors).std(0), 1e-6)


def retrieve_style_references(descriptors: np.ndarray) -> np.ndarray:
    """Frame indices [4] (TEMPLATES order, all different) of a character's Style Reference Images:
    for each template, the nearest frame not taken yet. Frames with a NaN descriptor are never taken."""
    from stylization.style_reference.motion import nearest

    d = np.asarray(descriptors, np.float64)
    ok = np.flatnonzero(np.isfinite(d).all(1))
    scale = _spread(d)
    targets = template_targets(d) / scale
    _, order = nearest(d[ok] / scale, targets, len(ok))  # every frame, nearest first, per template
    chosen: list[int] = []
    for row in order:
        chosen.append(int(ok[next(i for i in row if ok[i] not in chosen)]))
    return np.array(chosen)


def match_templates(descriptors: np.ndarray, reference_descriptors: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Each frame's nearest style reference [T] (index into the references) in descriptors standardised
    by ``spread`` [2] (the character's, :func:`descriptor_spread`); NaN frames get 0."""
    d = np.nan_to_num(np.asarray(descriptors, np.float64)) / spread
    r = np.asarray(reference_descriptors, np.float64) / spread
    return np.argmin(((d[:, None] - r[None]) ** 2).sum(-1), 1)


def descriptor_spread(descriptors: np.ndarray) -> np.ndarray:
    """Per-descriptor standard deviation [2] of a character's frames (the retrieval's scale)."""
    return _spread(descriptors)
