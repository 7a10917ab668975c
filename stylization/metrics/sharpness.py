"""CPBD, the cumulative probability of blur detection (Narvekar & Karam, IEEE TIP 2011): a no-reference
sharpness score in [0, 1], higher is sharper.

The numbers are those of the ``cpbd`` package (1.0.7, the one the talking-head papers and the ViCo
baseline use). That package no longer imports on SciPy >= 1.2 (``from scipy.ndimage import imread``),
and its pure-Python loops over every pixel are slow, so this is a vectorised reimplementation of
its algorithm, quirks included, and ``tests/test_metrics_frames.py`` checks that it returns exactly
the package's values on the same frames. The steps, as the package does them on a grayscale image:

1. Canny edges (scikit-image defaults, on the float image in 0..255, so its hysteresis thresholds
   of 0.1 / 0.2 pass almost every local maximum) decide which 64×64 blocks are edge blocks: more
   than 0.2 % of their pixels are edges. Only whole blocks count; the right and bottom remainders
   are ignored.
2. Octave-style Sobel edges (vertical-edge kernel, squared strength above twice the root of its
   mean, then a one-pixel thinning) are the pixels whose edge width is measured.
3. Edge width (Marziliano et al.): the gradient angle, quantised to 45°, is used only when it is 0°
   or ±180° (a horizontal gradient); the width is 2 plus the number of further monotone steps to
   the left and to the right, at most 100 each. Like the package, a zero horizontal gradient counts
   as angle 0 (so vertical gradients are measured horizontally too), other angles get no width,
   and no pixel gets a width when every angle in the image is zero.
4. Per edge block, the just-noticeable width is 5 for a contrast (max − min) of at most 50 and 3
   above; each width w gives P = 1 − exp(−(w / w_JNB)^3.6), rounded to a percent, and CPBD is the
   fraction of all measured widths with a rounded P below 64 %.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from scipy.ndimage import convolve

BLOCK_PIXELS = 64  # side of the square blocks
EDGE_BLOCK_FRACTION = 0.002  # a block with more Canny edges than this fraction of its pixels is an edge block
BETA = 3.6  # slope of the probability of blur detection
MAX_MARGIN = 100  # at most this many monotone steps are counted on either side of an edge
LOW_CONTRAST_MAX = 50  # contrast (0..255) at or below which the just-noticeable width is 5, else 3
P_BLUR_PERCENT_BELOW = 64  # CPBD = fraction of edges whose rounded P_blur (%) is below this
# The package's Sobel kernel: scikit-image's HSOBEL_WEIGHTS normalised to unit absolute sum, transposed.
_SOBEL = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 8.0


def cpbd(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """RGB uint8 frames [T, H, W, 3] -> CPBD of each frame [T] (float64, no unit, in [0, 1]).

    Each frame is made gray with OpenCV's RGB2GRAY (0.299 R + 0.587 G + 0.114 B, rounded to uint8),
    which is what the ViCo baseline gets from ``cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2GRAY)`` on
    the same picture: the channel order matters, so frames must be RGB. A frame smaller than 64×64
    has no block and scores 0.
    """
    frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"cpbd needs RGB uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return torch.tensor([cpbd_gray(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)) for f in frames], dtype=torch.float64)


def cpbd_gray(gray: np.ndarray) -> float:
    """One grayscale image [H, W] (uint8, or any real values on the 0..255 scale) -> CPBD."""
    if gray.ndim != 2:
        raise ValueError(f"cpbd_gray needs one grayscale image [H, W], got shape {list(gray.shape)}")
    from skimage.feature import canny  # here: importing stylization.metrics should not load scikit-image

    image = gray.astype(np.float64)
    widths = edge_widths(image, _sobel_edges(image))
    edges = canny(image)
    h, w = image.shape
    buckets, total = [], 0
    for top in range(0, h - BLOCK_PIXELS + 1, BLOCK_PIXELS):
        for left in range(0, w - BLOCK_PIXELS + 1, BLOCK_PIXELS):
            rows, cols = slice(top, top + BLOCK_PIXELS), slice(left, left + BLOCK_PIXELS)
            if np.count_nonzero(edges[rows, cols]) <= BLOCK_PIXELS * BLOCK_PIXELS * EDGE_BLOCK_FRACTION:
                continue
            block = image[rows, cols]
            jnb = 5.0 if int(block.max() - block.min()) <= LOW_CONTRAST_MAX else 3.0
            block_widths = widths[rows, cols]
            block_widths = block_widths[block_widths != 0]
            p_blur = 1 - np.exp(-np.abs(block_widths / jnb) ** BETA)
            buckets.append(np.rint(p_blur * 100).astype(np.int64))  # half to even, as Python's round()
            total += block_widths.size
    if total == 0:
        return 0.0
    # The package's arithmetic: a histogram normalised by the edge count, then its first 64 bins summed.
    histogram = np.bincount(np.concatenate(buckets), minlength=101).astype(np.float64) / total
    return float(np.sum(histogram[:P_BLUR_PERCENT_BELOW]))


def _sobel_edges(image: np.ndarray) -> np.ndarray:
    """Octave's ``edge(image, "sobel")`` as the package ports it: [H, W] bool, thinned."""
    strength = np.square(convolve(image, _SOBEL))  # scipy's default border: reflect
    # Octave compares the *squared* strength with twice the root of its mean; kept as in the package.
    strength[strength <= 2 * np.sqrt(np.mean(strength))] = 0
    zero_col, zero_row = np.zeros((strength.shape[0], 1)), np.zeros((1, strength.shape[1]))
    across = (strength > np.c_[zero_col, strength[:, :-1]]) & (strength > np.c_[strength[:, 1:], zero_col])
    down = (strength > np.r_[zero_row, strength[:-1]]) & (strength > np.r_[strength[1:], zero_row])
    return across | down


def _runs_left(ok: np.ndarray) -> np.ndarray:
    """[H, N] bool -> at each j the number of consecutive True ending at j (j, j-1, ...)."""
    index = np.arange(ok.shape[1])
    last_false = np.maximum.accumulate(np.where(ok, -1, index), axis=1)
    return index - last_false


def _runs_right(ok: np.ndarray) -> np.ndarray:
    """[H, N] bool -> at each j the number of consecutive True starting at j (j, j+1, ...)."""
    return _runs_left(ok[:, ::-1])[:, ::-1]


def edge_widths(image: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Marziliano edge widths [H, W] in pixels (0 where no width is measured); see the module docstring.

    ``image`` [H, W] float64, ``edges`` [H, W] bool (the Sobel edges). For an edge pixel at column c
    whose gradient points right (angle 0), the package walks left from c-1 while each next pixel is
    strictly darker and right from c+1 while each next pixel is strictly brighter, at most 101 steps
    each; for angle ±180 the directions of brightness swap. The steps between c-1, c and c+1 are not
    looked at. Here the walks are run lengths of the signs of the horizontal differences.
    """
    h, w = image.shape
    widths = np.zeros((h, w))
    gy, gx = np.gradient(image)
    # math.atan2 per pixel in the package; angles within an ulp of a 22.5° rounding boundary would be
    # needed for numpy's arctan2 to quantise differently.
    angles = np.where(gx != 0, np.arctan2(gy, gx) * (180 / np.pi), 0.0)
    if not np.any(angles) or h < 3 or w < 3:
        return widths
    quantized = 45 * np.round(angles / 45)
    step = image[:, 1:] - image[:, :-1]  # [H, W-1]: step[:, j] is the change from column j to j+1
    zero = np.zeros((h, 1), np.int64)
    for angle_mask, rises in ((quantized == 0, True), (np.abs(quantized) == 180, False)):
        ok = step > 0 if rises else step < 0
        # Left walk from column c-1: its k-th step compares columns c-2-k and c-1-k (step[:, c-2-k]);
        # right walk from c+1: step[:, c+1+k]. Padded so that column c reads index c-1 and c+1.
        left = np.concatenate([zero, _runs_left(ok)], axis=1)  # [H, W]
        right = np.concatenate([_runs_right(ok), zero], axis=1)  # [H, W]
        width = 2 + np.minimum(left[:, :-1], MAX_MARGIN)[:, :-1] + np.minimum(right[:, 1:], MAX_MARGIN)[:, 1:]
        inner = (edges & angle_mask)[1:-1, 1:-1]
        widths[1:-1, 1:-1][inner] = width[1:-1][inner]
    return widths
