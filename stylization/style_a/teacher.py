"""VToonify-D as a frozen art-style teacher: real face frames + an art code -> stylised frames.

Style-A learns to render a speaking face in an art style; on real data (MEAD, HDTF) its ground
truth is what VToonify-D makes of the real frames. This is VToonify's own video recipe
(``style_transfer.py``): one W+ code per clip, pSp of the clip's first face with its first
``art_layers`` (7) layers replaced by the art code (an ``exstyle_code.npy`` entry mapped from Z+
to W+ by the generator's mapping network), then every frame through the content encoder with
its parsing map. Used by the preprocessing's art-target pass
(:mod:`stylization.preprocess.art_targets`); the training stage's ``stage.targets=teacher``
renders the same way on the fly.
"""

from __future__ import annotations

import torch
from torch import nn

from stylization.style_a.renderer import StyleARenderer


class ArtTeacher(nn.Module):
    """Args: vtoonify (:class:`~stylization.style_a.vtoonify.VToonifyD`), psp
    (:class:`~stylization.style_a.psp.PSP`), parser (BiSeNet, or None when parsing maps come with
    the frames), degree (d_s), art_layers (W+ layers taken from the art code; VToonify: 7)."""

    def __init__(self, vtoonify: nn.Module, psp: nn.Module, parser: nn.Module | None = None, degree: float = 0.5,
                 art_layers: int = 7):
        super().__init__()
        self.vtoonify, self.art_layers = vtoonify, int(art_layers)
        # the renderer's input side (BiSeNet as VToonify runs it, pSp codes); its generator is the teacher
        self.inputs = StyleARenderer(vtoonify, psp, parser, degree)

    @property
    def content_size(self) -> int:
        return self.vtoonify.in_size

    @torch.no_grad()
    def art_code(self, exstyle_z: torch.Tensor) -> torch.Tensor:
        """``exstyle_code.npy`` entries Z+ [S, n_latent, style_dim] -> W+ (the StyleGAN mapping)."""
        return self.vtoonify.generator.generator.map_codes(exstyle_z)

    @torch.no_grad()
    def style(self, identity_face: torch.Tensor, art: torch.Tensor) -> torch.Tensor:
        """Identity face [1, 3, P, P] in [-1, 1] and art W+ [1, L, S] -> the clip's W+ [1, L, S]:
        art on the first ``art_layers`` layers, pSp of the face above."""
        identity = self.inputs.codes(identity_face)
        k = self.art_layers
        return torch.cat([art[:, :k], identity[:, k:]], dim=1)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, style: torch.Tensor, parsing: torch.Tensor | None = None) -> torch.Tensor:
        """Frames [N, 3, C, C] in [-1, 1] (+ parsing [N, 19, C, C]; BiSeNet's when None) and the
        clip's W+ [1, L, S] -> stylised frames [N, 3, O, O] in [-1, 1]."""
        content = self.inputs.content_input(frames, parsing)
        return self.vtoonify(content, style.expand(frames.shape[0], -1, -1), self.inputs.degree).clamp(-1, 1)
