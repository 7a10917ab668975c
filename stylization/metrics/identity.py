"""CSIM: identity similarity between generated frames and the source (identity) frames.

CSIM is the cosine similarity of face-recognition embeddings, averaged over frames: 1 means the
recogniser sees the same person, ~0 unrelated faces (dlib's descriptors are not centred, so
different people still score well above 0). The metric takes embeddings, or frames plus an
``embedder`` callable; it does no file I/O and loads no network. The default embedder of the
benchmark is :class:`stylization.preprocess.faces.FaceEmbedder` (dlib's face-recognition ResNet,
128-d, 5-point alignment); :class:`stylization.preprocess.faces.ArcFaceEmbedder` is the ArcFace
option (:mod:`stylization.metrics.arcface`).

Source frames are either one identity picture (the self-driven protocol: the first frame of the
clip, compared with every generated frame) or one per generated frame (frame t with frame t).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

Embedder = Callable[[np.ndarray], "np.ndarray | None"]  # RGB uint8 [H, W, 3] -> [D], or None: no face


class CsimResult(NamedTuple):
    value: float       # mean cosine similarity over the frames used (NaN when none)
    frames_used: int   # frames where both the generated and its source frame gave an embedding
    frames_missed: int  # frames left out because one of them had no face


def cosine_similarity(generated, source) -> torch.Tensor:
    """generated [N, D], source [N, D] or [D] (broadcast) -> [N] cosine similarities (float64)."""
    g = torch.as_tensor(generated).double()
    s = torch.as_tensor(source).double().to(g.device)
    if g.ndim != 2 or s.ndim not in (1, 2) or s.shape[-1] != g.shape[-1] or (s.ndim == 2 and s.shape != g.shape):
        raise ValueError(f"embeddings must be generated [N, D] and source [D] or [N, D], got "
                         f"{list(g.shape)} and {list(s.shape)}")
    return torch.nn.functional.cosine_similarity(g, s.expand_as(g), dim=-1)


def csim(generated, source) -> float:
    """CSIM from embeddings: the mean of :func:`cosine_similarity` over the N generated frames."""
    return float(cosine_similarity(generated, source).mean())


def embed_frames(frames, embedder: Embedder) -> tuple[np.ndarray | None, np.ndarray]:
    """frames uint8 [T, H, W, 3] -> (embeddings float32 [T, D] with NaN rows where no face was found,
    or None when no frame had one; found bool [T])."""
    vectors = [embedder(np.asarray(frame)) for frame in frames]
    found = np.array([v is not None for v in vectors], bool)
    if not found.any():
        return None, found
    dim = next(len(v) for v in vectors if v is not None)
    out = np.full((len(vectors), dim), np.nan, np.float32)
    for t, v in enumerate(vectors):
        if v is not None:
            out[t] = v
    return out, found


def csim_frames(generated_frames, source_frames, embedder: Embedder) -> CsimResult:
    """CSIM of a generated video against its source frames.

    Args:
        generated_frames: uint8 [T, H, W, 3] RGB.
        source_frames: uint8 [1, H, W, 3] (one identity picture, compared with every frame) or
            [T, H, W, 3] (frame t with frame t).
        embedder: RGB uint8 [H, W, 3] -> embedding [D], or None when it finds no face.

    A frame whose generated or source picture has no face is left out and counted in
    ``frames_missed``; with no frame left the value is NaN, never a silent 0.
    """
    n_gen, n_src = len(generated_frames), len(source_frames)
    if n_src not in (1, n_gen):
        raise ValueError(f"source_frames: need 1 identity picture or one per generated frame ({n_gen}), got {n_src}")
    gen, gen_found = embed_frames(generated_frames, embedder)
    src, src_found = embed_frames(source_frames, embedder)
    if gen is None or src is None:
        return CsimResult(float("nan"), 0, n_gen)
    if n_src == 1:
        used = gen_found
        value = csim(gen[used], src[0]) if used.any() else float("nan")
    else:
        used = gen_found & src_found
        value = csim(gen[used], src[used]) if used.any() else float("nan")
    return CsimResult(value, int(used.sum()), int(n_gen - used.sum()))
