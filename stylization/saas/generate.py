"""SAAS at inference: speech + a source expression + a style clip -> an expression sequence.

As the official audio-driven inference composes the parts: the source style code from the source
frame's expression repeated over a style window, the target style code from a window of the style
clip (its centre 32 frames; a shorter clip is repeated back and forth to fill the window), Audio2Exp's
expressions from the mel windows with the eyes open, then the residual adapter and decoder in the
target style. The LSTMs run over the whole sequence at once (memory grows with its length: about
1 KB per frame).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def style_window(exp: np.ndarray, frames: int) -> np.ndarray:
    """A clip's expressions [S, 64] -> its centre ``frames`` frames [frames, 64] (a shorter clip is
    extended by playing it back and forth)."""
    exp = np.asarray(exp, np.float32)
    if len(exp) < frames:
        index = np.arange(frames) % max(2 * len(exp) - 2, 1)
        exp = exp[np.where(index < len(exp), index, 2 * len(exp) - 2 - index)]
    start = (len(exp) - frames) // 2
    return exp[start: start + frames]


class SAASMotion(nn.Module):
    """Wraps a trained audio-driven :class:`~stylization.saas.model.SAASGenerator` (eval mode)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator.eval()

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @torch.no_grad()
    def style_code(self, exp: np.ndarray) -> torch.Tensor:
        """A style clip's expressions [S, 64] (S >= 1) -> code [1, D]."""
        window = style_window(exp, self.generator.style_frames)
        return self.generator.style(torch.from_numpy(window)[None].to(self.device))

    @torch.no_grad()
    def generate(self, mel: torch.Tensor, source_exp: torch.Tensor, target_code: torch.Tensor) -> torch.Tensor:
        """Mel windows [T, 1, 80, 16], the source frame's expression [64] and a target code [1, D] ->
        expressions [T, 64]."""
        source_exp = source_exp.to(self.device).float()
        source_code = self.style_code(source_exp[None].expand(self.generator.style_frames, -1).cpu().numpy())
        blink = torch.zeros(1, len(mel), device=self.device)
        out = self.generator.generate(target_code, source_code, mel=mel[None].to(self.device),
                                      source_exp=source_exp[None], blink=blink)
        return out[0].float()
