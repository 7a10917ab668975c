"""Procedural art styles: the art-style ground truth of the synthetic corpus.

For MEAD/HDTF the stylised target frames come from VToonify; here each frame is passed
through one of these deterministic image filters (a few milliseconds at 256x256 each).
Textures (paper grain, brush strokes, halftone dots) are fixed per style and resolution.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

ART_STYLES = ("cel", "pencil", "watercolour", "pop_art", "pixel_art", "oil_paint")


@functools.lru_cache(maxsize=32)
def _texture(kind: str, resolution: int) -> np.ndarray:
    """Fixed float32 [R, R] texture around 1.0."""
    rng = np.random.default_rng(sum(map(ord, kind)) * 1000 + resolution)
    noise = rng.normal(size=(resolution, resolution)).astype(np.float32)
    if kind == "paper":
        fine = cv2.GaussianBlur(noise, (0, 0), 0.8)
        coarse = cv2.GaussianBlur(rng.normal(size=(resolution, resolution)).astype(np.float32), (0, 0), resolution / 40)
        return 1.0 + 0.04 * fine / fine.std() + 0.05 * coarse / coarse.std()
    if kind == "strokes":  # diagonal pencil strokes
        k = max(3, resolution // 24) | 1
        kernel = np.eye(k, dtype=np.float32)[::-1] / k
        streaks = cv2.filter2D(noise, -1, kernel)
        return 1.0 + 0.12 * streaks / streaks.std()
    if kind == "brush":  # short horizontal brush strokes
        k = max(3, resolution // 16) | 1
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        strokes = cv2.filter2D(noise, -1, kernel)
        return 1.0 + 0.08 * strokes / strokes.std()
    raise ValueError(kind)


@functools.lru_cache(maxsize=8)
def _halftone(resolution: int) -> np.ndarray:
    """[R, R] bool mask of a dot grid."""
    step = max(4, resolution // 40)
    y, x = np.mgrid[0:resolution, 0:resolution]
    return ((x % step - step / 2) ** 2 + (y % step - step / 2) ** 2) < (0.3 * step) ** 2


def _edges(img: np.ndarray, low: int, high: int, width: int) -> np.ndarray:
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), low, high)
    if width > 1:
        edges = cv2.dilate(edges, np.ones((width, width), np.uint8))
    return edges > 0


def _cel(img):
    r = img.shape[0]
    hsv = cv2.cvtColor(cv2.bilateralFilter(img, 5, 40, 5), cv2.COLOR_RGB2HSV).astype(np.int32)
    hsv[..., 2] = np.minimum(255, (hsv[..., 2] // 64) * 64 + 48)
    hsv[..., 1] = np.minimum(255, hsv[..., 1] * 5 // 4)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    out[_edges(img, 40, 110, max(1, r // 128))] = (25, 20, 30)
    return out


def _pencil(img):
    r = img.shape[0]
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    blur = cv2.GaussianBlur(255.0 - gray, (0, 0), max(1.0, r / 60))
    dodge = np.clip(gray * 255.0 / (256.0 - blur), 0, 255)
    shading = 0.45 + 0.55 * gray / 255.0  # graphite shading of darker regions
    sketch = dodge * shading * _texture("strokes", r) * _texture("paper", r)
    sketch[_edges(img, 30, 90, 1)] *= 0.35
    sketch = np.clip(sketch, 0, 255)
    return np.clip(sketch[..., None] * np.array([1.0, 0.98, 0.93]), 0, 255).astype(np.uint8)


def _watercolour(img):
    r = img.shape[0]
    base = cv2.bilateralFilter(img, 7, 60, 7)
    base = cv2.medianBlur(base, 5).astype(np.float32)
    base = 0.72 * base + 0.28 * 255.0
    gray = cv2.cvtColor(base.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = cv2.GaussianBlur(np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)), (0, 0), 1.5)
    darkening = 1.0 - 0.35 * np.clip(grad / (grad.max() + 1e-6), 0, 1)
    out = base * (darkening * _texture("paper", r))[..., None]
    return np.clip(cv2.GaussianBlur(out, (0, 0), 0.7), 0, 255).astype(np.uint8)


POP_PALETTE = np.array([[25, 30, 110], [230, 40, 140], [40, 200, 230], [250, 230, 40]], np.uint8)


def _pop_art(img):
    r = img.shape[0]
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    level = np.digitize(gray, [70, 130, 185])
    out = POP_PALETTE[level].copy()
    dots = _halftone(r) & (level == 2)
    out[dots] = POP_PALETTE[1]
    out[_edges(img, 40, 110, max(2, r // 96))] = (15, 15, 20)
    return out


def _pixel_art(img):
    r = img.shape[0]
    cells = max(8, r // 8)
    small = cv2.resize(img, (cells, cells), interpolation=cv2.INTER_AREA)
    small = (small.astype(np.int32) // 64) * 85  # 4 levels per channel: a 64-colour palette
    out = cv2.resize(small.astype(np.uint8), (r, r), interpolation=cv2.INTER_NEAREST)
    step = r / cells
    grid = (np.floor(np.arange(r) / step) != np.floor((np.arange(r) + 1) / step))
    out[grid] = (out[grid] * 0.85).astype(np.uint8)
    out[:, grid] = (out[:, grid] * 0.85).astype(np.uint8)
    return out


def _oil_paint(img):
    r = img.shape[0]
    base = cv2.medianBlur(img, 7)
    base = ((base.astype(np.int32) // 32) * 32 + 16).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 1.0)
    gray = cv2.cvtColor(base.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    relief = cv2.Sobel(gray, cv2.CV_32F, 1, 1, ksize=3)
    relief = 1.0 + 0.15 * np.tanh(relief / 60.0)
    out = base * (_texture("brush", r) * relief)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


_FILTERS = {"cel": _cel, "pencil": _pencil, "watercolour": _watercolour, "pop_art": _pop_art,
            "pixel_art": _pixel_art, "oil_paint": _oil_paint}


def stylize(img: np.ndarray, style: str) -> np.ndarray:
    """RGB uint8 [R, R, 3] -> the same frame in ``style`` (one of :data:`ART_STYLES`)."""
    if style not in _FILTERS:
        raise ValueError(f"unknown art style {style!r}; expected one of {list(ART_STYLES)}")
    if img.ndim != 3 or img.shape[0] != img.shape[1] or img.dtype != np.uint8:
        raise ValueError(f"expected a square uint8 RGB image, got {img.dtype} {list(img.shape)}")
    return np.ascontiguousarray(_FILTERS[style](img))
