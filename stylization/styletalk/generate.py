"""StyleTalk at inference: per-frame phonemes + a style clip's expressions -> an expression sequence.

The generator decodes every frame from its own 11-phoneme window, so a sequence of any length is
processed in chunks of ``chunk_frames`` frames (memory grows with the chunk, not the audio). The style
code is computed once per style clip; a clip longer than the encoder's position table is cropped at
its centre.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stylization.data.phonemes import phoneme_windows
from stylization.data.style_clips import crop_style


class StyleTalkMotion(nn.Module):
    """Wraps a trained :class:`~stylization.styletalk.model.StyleTalk` ``generator`` (eval mode)."""

    def __init__(self, generator: nn.Module, chunk_frames: int = 256):
        super().__init__()
        self.generator = generator.eval()
        self.chunk_frames = chunk_frames

    @property
    def max_style_frames(self) -> int:
        return int(self.generator.style_encoder.pos_embed.pos_table.shape[1])

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @torch.no_grad()
    def style_code(self, style_exp: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A style clip's expressions [S, 64] (any S >= 1) -> code [1, D]."""
        exp = np.asarray(style_exp.cpu() if torch.is_tensor(style_exp) else style_exp, np.float32)
        crop, mask = crop_style(exp, min(len(exp), self.max_style_frames), None)
        return self.generator.style_encoder(torch.from_numpy(crop)[None].to(self.device),
                                            torch.from_numpy(mask)[None].to(self.device))

    @torch.no_grad()
    def generate(self, labels: np.ndarray, code: torch.Tensor) -> torch.Tensor:
        """Per-frame phoneme indices [T] and a style code [1, D] -> expressions [T, 64] (float32)."""
        windows = torch.from_numpy(phoneme_windows(np.asarray(labels)))[None].to(self.device)
        g = self.generator
        parts = [g.decoder(g.content_encoder(windows[:, i: i + self.chunk_frames]), code)
                 for i in range(0, windows.shape[1], self.chunk_frames)]
        return torch.cat(parts, 1)[0].float()
