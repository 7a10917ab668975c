"""Exponential moving average of a module's parameters (buffers are copied)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Shadow copy updated as p_ema <- decay · p_ema + (1 - decay) · p after each step.

    The shadow is an eval-mode, gradient-free copy of the module, used for validation and
    saved in checkpoints next to the trained weights.

    ``rampup`` (StyleGAN2-ADA's ``ema_rampup``): the average's half-life, in steps, is at most
    ``rampup`` times the number of updates so far, so early on the shadow follows the weights
    closely instead of keeping mostly the initialisation (with decay 0.995, a 600-step run's
    shadow would otherwise still be 5 % initialisation and lag ~200 steps behind); once
    ``rampup · updates`` exceeds the half-life of ``decay`` (ln 0.5 / ln decay), ``decay`` applies.
    """

    def __init__(self, module: nn.Module, decay: float, rampup: float | None = None):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if rampup is not None and not rampup > 0:
            raise ValueError(f"EMA rampup must be positive (or None), got {rampup}")
        self.decay, self.rampup = decay, rampup
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    def decay_at(self, updates: int) -> float:
        """The decay of the ``updates``-th update (1-based)."""
        if self.rampup is None or self.decay == 0.0:
            return self.decay
        return min(self.decay, 0.5 ** (1.0 / max(self.rampup * updates, 1e-8)))

    @torch.no_grad()
    def update(self, module: nn.Module, updates: int | None = None) -> None:
        """One update; ``updates`` (1-based count including this one) is needed with ``rampup``."""
        if self.rampup is not None and updates is None:
            raise ValueError("an EMA with rampup needs the update count")
        decay = self.decay if updates is None else self.decay_at(updates)
        for p_ema, p in zip(self.shadow.parameters(), module.parameters(), strict=True):
            p_ema.lerp_(p.detach().to(p_ema.dtype), 1.0 - decay)
        for b_ema, b in zip(self.shadow.buffers(), module.buffers(), strict=True):
            b_ema.copy_(b)
