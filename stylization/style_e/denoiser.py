"""The Style-E denoiser: an AGRoL-style MLP that predicts a clean expression window.

Inputs per window of W frames: the noisy expression x_t [B, W, 64], the timestep t [B],
the audio-derived per-frame expression [B, W, 64] (Audio2Exp) and the text vector [B, 512]
(CLIP). x_t and the audio expression are each projected to the width, the text vector is
projected as-is and repeated over frames; the three are concatenated (3 × width) and
projected to the width. Each of the blocks adds its own projection of a sinusoidal
timestep embedding, mixes frames (LayerNorm -> 1×1 Conv1d over the W-frame axis -> SiLU,
residual) and then features (LayerNorm -> Linear -> SiLU, residual). A final Linear gives
x0_hat [B, W, 64]. About 5 M parameters at width 512 with 8 blocks.

Classifier-free guidance: a text vector replaced by the learned ``null_text`` (per sample,
``text_keep`` False) trains the unconditional model in the same network.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[B] timesteps -> [B, dim] sinusoidal embedding (cos half, sin half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


class MixerBlock(nn.Module):
    """Timestep injection, then frame mixing and feature mixing, both residual."""

    def __init__(self, width: int, window_frames: int):
        super().__init__()
        self.time_proj = nn.Linear(width, width)
        self.frame_norm = nn.LayerNorm(width)
        self.frame_mix = nn.Conv1d(window_frames, window_frames, kernel_size=1)  # mixes the W frames
        self.feature_norm = nn.LayerNorm(width)
        self.feature_mix = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        """h [B, W, width], t_emb [B, width] -> [B, W, width]."""
        h = h + self.time_proj(t_emb)[:, None]
        h = h + self.act(self.frame_mix(self.frame_norm(h)))
        return h + self.act(self.feature_mix(self.feature_norm(h)))


class DiffMLP(nn.Module):
    """x0-predicting denoiser over expression windows (see the module docstring).

    Args (all required; configs/model/style_e.yaml holds the paper's values):
        exp_dim: expression coefficients per frame (64).
        text_dim: text vector size (512 for CLIP ViT-B/32).
        width: hidden width (512 in the paper).
        blocks: number of :class:`MixerBlock` (8 in the paper).
        window_frames: W, frames per window (32); fixed by the frame-mixing convolutions.
        use_text: False builds the "w/o emotion text" ablation (no text input at all).
    """

    def __init__(self, *, exp_dim: int, text_dim: int, width: int, blocks: int, window_frames: int, use_text: bool):
        super().__init__()
        self.exp_dim, self.text_dim, self.window_frames, self.use_text = exp_dim, text_dim, window_frames, use_text
        self.motion_proj = nn.Linear(exp_dim, width)
        self.audio_proj = nn.Linear(exp_dim, width)
        n_inputs = 2 * width + (text_dim if use_text else 0)
        self.input_proj = nn.Linear(n_inputs, width)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(MixerBlock(width, window_frames) for _ in range(blocks))
        self.out = nn.Linear(width, exp_dim)
        if use_text:
            self.null_text = nn.Parameter(torch.zeros(text_dim))
        self.width = width

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, audio_exp: torch.Tensor, text: torch.Tensor | None = None,
                text_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x_t, audio_exp [B, W, 64]; t [B]; text [B, 512] or None; text_keep [B] bool -> x0_hat [B, W, 64].

        With ``use_text``, a missing ``text`` or ``text_keep`` False uses the null text (unconditional).
        """
        b, w, _ = x_t.shape
        if w != self.window_frames or audio_exp.shape != x_t.shape:
            raise ValueError(f"expected windows [B, {self.window_frames}, {self.exp_dim}], got x_t {list(x_t.shape)} "
                             f"and audio_exp {list(audio_exp.shape)}")
        parts = [self.motion_proj(x_t), self.audio_proj(audio_exp)]
        if self.use_text:
            null = self.null_text.to(x_t.dtype).expand(b, self.text_dim)
            if text is None:
                text = null
            elif text_keep is not None:
                text = torch.where(text_keep[:, None], text.to(x_t.dtype), null)
            parts.append(text.to(x_t.dtype)[:, None].expand(b, w, self.text_dim))
        h = self.input_proj(torch.cat(parts, dim=-1))
        t_emb = self.time_mlp(timestep_embedding(t, self.width).to(h.dtype))
        for block in self.blocks:
            h = block(h, t_emb)
        return self.out(h)
