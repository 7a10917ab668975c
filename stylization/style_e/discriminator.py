"""The window discriminator of Table 2's "w/o diffusion" ablation (stage ``style_e_cgan``).

It judges an expression window together with the conditions it was generated from, so the
generator cannot ignore the audio or the text and still look real.
"""

from __future__ import annotations

import torch
from torch import nn


class WindowDiscriminator(nn.Module):
    """(window [B, W, exp_dim], audio condition [B, W, exp_dim], text [B, text_dim] or None) -> logits [B].

    Per-frame features of the concatenated inputs, two temporal convolutions (kernel 3 frames),
    mean over time.

    Args:
        exp_dim: expression coefficients per frame (64).
        text_dim: text vector size (ignored when ``use_text`` is False).
        width: feature channels.
        use_text: whether the text vector is an input (False for the no-text ablation).
    """

    def __init__(self, *, exp_dim: int, text_dim: int, width: int, use_text: bool):
        super().__init__()
        self.use_text, self.text_dim = use_text, text_dim
        self.frame = nn.Linear(2 * exp_dim + (text_dim if use_text else 0), width)
        self.temporal = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv1d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
                                      nn.Conv1d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.head = nn.Linear(width, 1)

    def forward(self, window: torch.Tensor, audio_exp: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        b, w, _ = window.shape
        parts = [window, audio_exp]
        if self.use_text:
            parts.append(text[:, None].expand(b, w, self.text_dim))
        h = self.temporal(self.frame(torch.cat(parts, -1)).transpose(1, 2))  # [B, width, W]
        return self.head(h.mean(-1)).squeeze(-1)
