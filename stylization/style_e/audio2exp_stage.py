"""Training stage ``audio2exp``: SadTalker's Audio2Exp trained from scratch on a corpus.

Style-E's audio condition is Audio2Exp's per-frame expression. SadTalker's released
weights are the default; this stage trains the same network where they cannot be used
(the synthetic corpus, another face model) or fine-tunes it.

Loss: MSE on the 64 expression coefficients + ``mouth_weight`` · L1 on the lip-opening
distances (keypoint pairs 51-57 and 62-66) of the face model with the clip's identity.
Validation reports the loss terms and M-LMD / F-LMD in pixels of a 256 frame (ground-truth
identity and pose, predicted vs true expression).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from stylization.engine.stage import StepContext
from stylization.style_e.window_stage import WindowStage


class Audio2ExpStage(WindowStage):
    @property
    def window_frames(self) -> int:
        return int(self.cfg.stage.window_frames)

    def build_modules(self) -> dict[str, nn.Module]:
        # Channels-last weights from the start: ~1.6x faster convolutions on CPUs, same values.
        return {"audio2exp": instantiate(self.cfg.model).to(memory_format=torch.channels_last)}

    def build_optimizers(self, modules):
        return {"audio2exp": self.adamw(modules["audio2exp"].parameters())}

    @staticmethod
    def _forward(net: nn.Module, batch: dict) -> torch.Tensor:
        return net(batch["mel"], batch["source_exp"], batch["blink"])

    def losses(self, pred: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """The expression MSE and the lip-opening L1 of ``pred`` [B, W, 64]."""
        mouth = self.mouth_loss(pred, batch)
        return {"exp_mse": F.mse_loss(pred.float(), batch["exp"]), "mouth_l1": mouth}

    def training_step(self, batch, ctx: StepContext):
        with ctx.autocast():
            pred = self._forward(ctx.modules["audio2exp"], batch)
        terms = self.losses(pred, batch)
        loss = terms["exp_mse"] + float(self.cfg.stage.mouth_weight) * terms["mouth_l1"]
        grad_norm = ctx.optimize("audio2exp", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, "grad_norm": grad_norm}

    def predict(self, batch, ctx: StepContext) -> torch.Tensor:
        return self._forward(ctx.eval_modules["audio2exp"], batch)

    def validation_terms(self, pred, batch):
        return self.losses(pred, batch)
