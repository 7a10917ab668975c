"""Training stage ``saas_edit``: SAAS's video-driven style editing (``video_driven.pth``'s generator).

The same generator, discriminators, data and codebook handling as :mod:`stylization.saas.stage`
(``stage=saas``; with ``stage.codebook`` a saas_codebook run, else an in-run codebook phase first),
with the expression encoder in place of the audio encoder: the source is A's own expression window
[B, 32, 64], so the generator restyles an existing performance instead of speaking new audio:

* ``transfer`` = decoder(ra(encoder(A, s_A), s_B), s_B): A's performance in style B;
* ``recon`` = decoder(ra(encoder(A, s_A), s_A), s_A): A itself.

Generator losses (``stage.loss``; the official video_driven.json weights):

* ``recon`` 1000: keypoint MSE of ``recon`` against A plus the MSE of its coefficients (the official
  ``theta`` = 1; no Soft-DTW here, as the official video-driven trainer);
* ``cycle`` 1000: ``transfer`` edited back to A's style, decoder(ra(encoder(transfer, s_B), s_A), s_A),
  against A (coefficient MSE + keypoint MSE): the edit must keep what was said;
* ``mouth`` 20 (mouth preservation: the lip gaps of both outputs against A's), ``cls`` 50, ``dis`` 50,
  ``trip`` 10, ``tem`` 1: as ``stage=saas``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylization.saas.stage import SAASStage

LOSSES = ("recon", "cycle", "mouth", "cls", "dis", "trip", "tem")


class SAASEditStage(SAASStage):
    """SAAS's video-driven generator (see the module docstring)."""

    losses = LOSSES
    source = "video"
    with_mel = False

    def generate(self, generator: nn.Module, batch: dict, s_a: torch.Tensor, s_b: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of A's and B's windows [B, D] -> (transfer [B, T, 64] in B's style, recon [B, T, 64] in A's)."""
        b = s_a.shape[0]
        out = generator(torch.cat([s_b, s_a]), torch.cat([s_a, s_a]), exp=batch["exp"].repeat(2, 1, 1))
        return out[:b], out[b:]

    def sequence_terms(self, recon: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"recon_exp": F.mse_loss(recon, truth)}

    def extra_terms(self, generator: nn.Module, batch: dict, transfer: torch.Tensor, c_a: torch.Tensor,
                    c_b: torch.Tensor, kp_true: torch.Tensor) -> dict[str, torch.Tensor]:
        back = generator(c_a, c_b, exp=transfer).float()
        exp_term = F.mse_loss(back, batch["exp"])
        kp_term = F.mse_loss(self.keypoints(back, batch["coeffs"]), kp_true)
        return {"cycle": exp_term + kp_term, "cycle_exp": exp_term}
