"""The emotion-text condition: CLIP's projected text embedding, frozen, cached per sentence.

:class:`ClipTextEncoder` wraps an already built open_clip CLIP model and its tokenizer; it
reads no file and downloads nothing. :func:`stylization.loading.clip_text_encoder` builds one
from a model name (``"ViT-B-32"`` with ``pretrained="openai"``, the paper's; weights from the
user's open_clip / Hugging Face cache) or from a CLIP config dict (the tests and the CPU-sized
model use :func:`tiny_clip_config`, randomly initialised from a seed).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def tiny_clip_config(embed_dim: int = 512, width: int = 64, layers: int = 2, heads: int = 2) -> dict:
    """An open_clip CLIP config with a small text tower and a minimal vision tower."""
    return {"embed_dim": embed_dim,
            "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": heads, "layers": layers}}


class ClipTextEncoder(nn.Module):
    """Sentences -> L2-normalised projected CLIP text vectors [N, embed_dim], cached by sentence.

    Args:
        clip: an open_clip ``CLIP`` (its image tower is dropped: only ``encode_text`` is used).
        tokenizer: open_clip's tokenizer for that model: list of N sentences -> token ids [N, 77].
    """

    def __init__(self, clip: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor]):
        super().__init__()
        clip.visual = None  # the image tower is not used
        self.clip = clip.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.embed_dim = int(clip.text_projection.shape[1])
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always in eval mode

    @torch.no_grad()
    def forward(self, sentences: list[str]) -> torch.Tensor:
        """[N] sentences -> [N, embed_dim] on the model's device."""
        device = self.clip.text_projection.device
        missing = [s for s in dict.fromkeys(sentences) if s not in self._cache]
        if missing:
            feats = self.clip.encode_text(self.tokenizer(missing).to(device)).float()
            feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            self._cache.update({s: f for s, f in zip(missing, feats)})
        return torch.stack([self._cache[s].to(device) for s in sentences])


def interpolate_texts(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation between two normalised text vectors [..., D] (alpha 0 -> a, 1 -> b)."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.arccos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - alpha) * omega) / so) * a_n + (torch.sin(alpha * omega) / so) * b_n
