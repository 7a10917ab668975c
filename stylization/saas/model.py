"""SAAS's expression generator as one module, in the released layouts.

``SAASGenerator(source="video")`` is ``video_driven.pth`` (``encoder``, ``style_encoder``, ``ra``,
``decoder``), ``source="audio"`` is ``audio_driven.pth`` (``audio_encoder`` in place of ``encoder``):
the top-level keys of those files, each a state dict, become the prefixes of ours
(:func:`stylization.loading.load_official` kinds ``saas_video_driven`` / ``saas_audio_driven``).

As the official inference composes them:

* source style = style encoder of the source (the video's first 32 frames; for speech, the source
  frame's expression repeated 32 times);
* target style = style encoder of a 32-frame window of the style clip;
* z = input encoder(source expressions or Audio2Exp(speech), source style);
* expressions = decoder(ra(z, target style), target style) [B, T, 64].

``forward`` takes the two styles as windows or as codes (training calls it, so that
DistributedDataParallel sees the pass); ``generate`` takes codes.

Pure ``nn.Module``.
"""

from __future__ import annotations

import torch
from torch import nn

from stylization.saas.adapter import AudioLatentEncoder, LatentEncoder, ResidualAdapter, StyleDecoder
from stylization.saas.codebook import VQStyleEncoder

SOURCES = ("video", "audio")


class SAASGenerator(nn.Module):
    """The four parts (see the module docstring); ``style`` and ``generate`` compose them."""

    def __init__(self, source: str = "video", latent_dim: int = 64, style_dim: int = 256, encoder_layers: int = 2,
                 decoder_layers: int = 4, neutral_layers: int = 4, style_layers: int = 6, style_encoder: dict | None = None,
                 audio_channels=(32, 64, 128, 256, 512), hyperstyle: bool = True):
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        self.source = source
        if source == "video":
            self.encoder = LatentEncoder(64, style_dim, latent_dim, encoder_layers)
        else:
            self.audio_encoder = AudioLatentEncoder(64, style_dim, latent_dim, encoder_layers, audio_channels)
        self.style_encoder = VQStyleEncoder(**{"in_dim": 64, "dim": style_dim, **(style_encoder or {})})
        self.ra = ResidualAdapter(latent_dim, style_dim, neutral_layers, style_layers, hyperstyle)
        self.decoder = StyleDecoder(latent_dim, style_dim, decoder_layers)

    def train(self, mode: bool = True):
        """A frozen style encoder (no parameter requires a gradient) stays in eval mode: its BatchNorm
        statistics are the pretrained codebook's."""
        super().train(mode)
        if not any(p.requires_grad for p in self.style_encoder.parameters()):
            self.style_encoder.eval()
        return self

    @property
    def style_frames(self) -> int:
        return self.style_encoder.frames

    def style(self, exp: torch.Tensor) -> torch.Tensor:
        """A style window [B, 32, 64] -> style code [B, 256]."""
        return self.style_encoder(exp)

    def generate(self, target_style: torch.Tensor, source_style: torch.Tensor, *, exp: torch.Tensor | None = None,
                 mel: torch.Tensor | None = None, source_exp: torch.Tensor | None = None,
                 blink: torch.Tensor | None = None) -> torch.Tensor:
        """Codes [B, 256] and the source motion -> expressions [B, T, 64]. Video: ``exp`` [B, T, 64]; audio:
        ``mel`` [B, T, 1, 80, 16], ``source_exp`` [B, 64] and ``blink`` [B, T]."""
        if self.source == "video":
            z = self.encoder(exp, source_style)
        else:
            z = self.audio_encoder(mel, source_exp, blink, source_style)
        return self.decoder(self.ra(z, target_style), target_style)

    def forward(self, target: torch.Tensor, source_style: torch.Tensor, **source) -> torch.Tensor:
        """The target style and the source style, each a window [B, 32, 64] (encoded here) or a code
        [B, D], and the source motion (:meth:`generate`'s keywords) -> expressions [B, T, 64]. Training
        calls this (not :meth:`generate`) so that DistributedDataParallel sees the forward pass."""
        codes = [self.style(x) if x.dim() == 3 else x for x in (target, source_style)]
        return self.generate(*codes, **source)
