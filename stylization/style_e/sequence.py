"""Windows over sequences of any length, and seamless blending of per-window results.

The denoiser works on W-frame windows. A T-frame sequence is covered by windows that start
every ``W - overlap`` frames (the last one ends exactly at T; T < W is padded by repeating
the last frame). Results are blended with weights that ramp linearly across each overlap,
so neighbouring windows hand over smoothly and every frame's weights sum to one.
:func:`chunk_bounds` splits the windows of long audio into bounded groups for the network.
"""

from __future__ import annotations

import torch


def window_starts(n_frames: int, window: int, overlap: int) -> list[int]:
    """First frame of each window; the last window ends at max(n_frames, window)."""
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, {window}), got {overlap}")
    total = max(n_frames, window)
    hop = window - overlap
    starts = list(range(0, total - window + 1, hop))
    if starts[-1] + window < total:
        starts.append(total - window)
    return starts


def chunk_bounds(n: int, max_size: int) -> list[tuple[int, int]]:
    """[start, stop) of the fewest consecutive chunks of at most ``max_size`` items covering ``n``
    items, their sizes differing by at most one (no small last chunk: (10, 4) -> sizes 3, 3, 4)."""
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    k = max(1, -(-n // max_size))
    edges = [i * n // k for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


def split_windows(seq: torch.Tensor, starts: list[int], window: int) -> torch.Tensor:
    """[T, ...] -> [N, W, ...], padding T < W by repeating the last frame."""
    if seq.shape[0] < window:
        seq = torch.cat([seq, seq[-1:].expand(window - seq.shape[0], *seq.shape[1:])])
    return torch.stack([seq[s:s + window] for s in starts])


def blend_windows(windows: torch.Tensor, starts: list[int], n_frames: int) -> torch.Tensor:
    """[N, W, D] per-window results -> [T, D], cross-fading linearly where windows overlap."""
    n, w = windows.shape[:2]
    total = max(n_frames, w)
    weights = torch.ones(n, w, dtype=windows.dtype, device=windows.device)
    for i in range(n):
        if i > 0:  # fade in over the overlap with the previous window
            ov = starts[i - 1] + w - starts[i]
            if ov > 0:
                weights[i, :ov] = torch.arange(1, ov + 1, dtype=windows.dtype) / (ov + 1)
        if i < n - 1:  # fade out over the overlap with the next window
            ov = starts[i] + w - starts[i + 1]
            if ov > 0:
                weights[i, w - ov:] = torch.minimum(weights[i, w - ov:],
                                                    torch.arange(ov, 0, -1, dtype=windows.dtype) / (ov + 1))
    out = torch.zeros(total, *windows.shape[2:], dtype=windows.dtype, device=windows.device)
    norm = torch.zeros(total, dtype=windows.dtype, device=windows.device)
    for i, s in enumerate(starts):
        out[s:s + w] += weights[i].reshape(w, *([1] * (windows.ndim - 2))) * windows[i]
        norm[s:s + w] += weights[i]
    return (out / norm.reshape(total, *([1] * (windows.ndim - 2))))[:n_frames]
