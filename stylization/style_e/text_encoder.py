"""The emotion-text condition: CLIP's projected text embedding, frozen, cached per sentence.

:class:`ClipTextEncoder` wraps an already built CLIP text tower and its tokenizer; it reads no
file and downloads nothing. Two towers fit: an open_clip ``CLIP`` (the default backend) and
:class:`HFClipText`, transformers' ``CLIPTextModelWithProjection`` behind the same two calls
(``encode_text`` on token ids, a tokenizer giving [N, 77] ids). For the same weights both give
the same vector: the same BPE ids, causal attention, pooling at the first end-of-text token,
then the projection. :func:`stylization.loading.clip_text_encoder` builds either: open_clip from
a model name (``"ViT-B-32"`` with ``pretrained="openai"``, the paper's; weights from the user's
open_clip / Hugging Face cache) or from a CLIP config dict (the tests and the CPU-sized model use
:func:`tiny_clip_config`, randomly initialised from a seed); transformers from a local directory
(``backend="hf"``).
"""

from __future__ import annotations

import html
from typing import Callable

import torch
from torch import nn


def tiny_clip_config(embed_dim: int = 512, width: int = 64, layers: int = 2, heads: int = 2) -> dict:
    """An open_clip CLIP config with a small text tower and a minimal vision tower."""
    return {"embed_dim": embed_dim,
            "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": heads, "layers": layers}}


class HFClipText(nn.Module):
    """transformers' CLIP text tower with open_clip's text interface.

    Args:
        model: a ``transformers.CLIPTextModelWithProjection``.
        tokenizer: its ``transformers.CLIPTokenizer``. With the text first cleaned as open_clip
            cleans it (ftfy, HTML entities; the tokenizer itself only applies NFC, whitespace and
            lower case, and would otherwise differ on curly quotes, ligatures, ``&amp;``), it gives
            open_clip's ids: start-of-text, BPE tokens cut after ``context_length - 2``,
            end-of-text, padded with end-of-text to ``context_length`` (open_clip pads with 0:
            neither changes the vector, read at the first end-of-text under a causal mask).
    """

    def __init__(self, model: nn.Module, tokenizer: Callable):
        super().__init__()
        import ftfy  # open_clip's dependency, and what its tokenizer cleans text with

        self.model = model
        self.hf_tokenizer = tokenizer
        self._fix_text = ftfy.fix_text
        self.context_length = int(model.config.max_position_embeddings)
        self.embed_dim = int(model.config.projection_dim)

    def tokenize(self, sentences: list[str]) -> torch.Tensor:
        """N sentences -> token ids [N, context_length] (int64)."""
        cleaned = [html.unescape(html.unescape(self._fix_text(s))).strip() for s in sentences]
        return self.hf_tokenizer(cleaned, padding="max_length", truncation=True,
                                 max_length=self.context_length, return_tensors="pt")["input_ids"]

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [N, L] -> projected, unnormalised text vectors [N, embed_dim]."""
        # No attention mask: the padding follows the end-of-text token, which the causal mask
        # already hides from it, as in open_clip.
        return self.model(input_ids=ids).text_embeds


class ClipTextEncoder(nn.Module):
    """Sentences -> L2-normalised projected CLIP text vectors [N, embed_dim], cached by sentence.

    Args:
        clip: an open_clip ``CLIP`` (its image tower is dropped: only ``encode_text`` is used) or
            an :class:`HFClipText`.
        tokenizer: the tower's tokenizer: list of N sentences -> token ids [N, 77] (open_clip's
            for that model, or :meth:`HFClipText.tokenize`).
    """

    def __init__(self, clip: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor]):
        super().__init__()
        if isinstance(clip, HFClipText):
            self.embed_dim = clip.embed_dim
        else:
            clip.visual = None  # the image tower is not used
            self.embed_dim = int(clip.text_projection.shape[1])
        self.clip = clip.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always in eval mode

    @torch.no_grad()
    def forward(self, sentences: list[str]) -> torch.Tensor:
        """[N] sentences -> [N, embed_dim] on the model's device."""
        device = next(self.clip.parameters()).device
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
