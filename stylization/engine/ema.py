"""Exponential moving average of a module's parameters (buffers are copied)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Shadow copy updated as p_ema <- decay · p_ema + (1 - decay) · p after each step.

    The shadow is an eval-mode, gradient-free copy of the module, used for validation and
    saved in checkpoints next to the trained weights.
    """

    def __init__(self, module: nn.Module, decay: float):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for p_ema, p in zip(self.shadow.parameters(), module.parameters(), strict=True):
            p_ema.lerp_(p.detach().to(p_ema.dtype), 1.0 - self.decay)
        for b_ema, b in zip(self.shadow.buffers(), module.buffers(), strict=True):
            b_ema.copy_(b)
