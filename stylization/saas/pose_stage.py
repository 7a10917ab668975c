"""Training stage ``saas_pose``: SAAS's head poses from audio (the pose codebook, then the predictor).

Items are 64-frame windows (:class:`~stylization.data.datasets.ClipWindowDataset` with per-frame MFCC
windows): the pose (Euler angles and translation, 6-d) of the first 32 frames is the past, that of the
last 32 frames the future to predict from their sound and the speaker's style. Two phases in one run,
as the official trains them in two scripts:

1. ``step < stage.codebook_steps`` (and, with ``trainer.max_minutes``, until ``stage.codebook_share``
   of the budget is spent): the pose codebook (:class:`~stylization.saas.codebook.VQCodebook`, 6-d,
   200 codes; ``model.pose_codebook``) learns 32-frame pose windows (both halves of each item):
   L1 reconstruction + VQ loss (the official ``calc_vq_loss_pose``); rarely used codes are re-seeded
   every ``stage.reseed_every`` steps (as the expression codebook's stage, our addition).
2. Then the codebook is frozen and the predictor (:class:`~stylization.saas.pose.AudioPosePredictor`;
   ``model.predictor``) learns the future's 4 codebook tokens from the past's 4 tokens, the future's
   32 MFCC windows and the style code of the future's expressions (cross-entropy; the official
   ``calc_logit_loss``). The visible past is drawn per batch as the official training draws it
   (:func:`~stylization.saas.pose.sample_mask_index`).

The style code comes from the frozen style encoder of ``stage.codebook`` (a saas_codebook, saas or
saas_edit run; kept in this run as ``style_codebook``, so the run is self-contained). The phase switch
is saved with the checkpoints. Validation: the codebook's pose reconstruction L1 (radians and the
face model's translation units) and the predictor's cross-entropy and token accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from stylization.constants import COEFF_SLICES
from stylization.data.datasets import ClipWindowDataset
from stylization.engine.distributed import unwrap
from stylization.engine.stage import FirstPhase, StepContext, TrainingStage
from stylization.errors import ConfigError
from stylization.runs import load_run
from stylization.saas.codebook_stage import check_recipe, codebook_step
from stylization.saas.pose import sample_mask_index

STYLE_HINT = "train one with: python train.py stage=saas model=saas_small data.root=DIR (or stage=saas_codebook)"
STYLE_STAGES = ("saas_codebook", "saas", "saas_edit")


def pose_of(coeffs: torch.Tensor) -> torch.Tensor:
    """Coefficients [..., 260] -> pose [..., 6]: Euler angles (radians) then translation."""
    return torch.cat([coeffs[..., COEFF_SLICES["angle"]], coeffs[..., COEFF_SLICES["trans"]]], -1)


class SAASPoseStage(TrainingStage):
    """The pose codebook, then the audio-to-pose predictor (see the module docstring)."""

    # the visible past is drawn per step (none of it on some steps), the past transformer is never used
    # (as in the official training), and the pose codebook's class head is layout only
    find_unused_parameters = True

    def __init__(self, cfg):
        super().__init__(cfg)
        s = cfg.stage
        self.phase = FirstPhase(s.codebook_steps, s.codebook_share, "codebook")
        check_recipe(s)
        if s.codebook is None:
            raise ConfigError(f"stage.codebook must name a run whose style encoder gives the style codes; {STYLE_HINT}")
        run = load_run(str(s.codebook), hint=STYLE_HINT)
        if run.stage not in STYLE_STAGES or "codebook" not in run.weights:
            raise ConfigError(f"stage.codebook={s.codebook} is a {run.stage!r} run; it must be one of "
                              f"{', '.join(STYLE_STAGES)}; {STYLE_HINT}")
        self.style_run = run
        node = run.config.model.codebook
        # recorded in the config the checkpoints save, so that the run rebuilds without the style run
        OmegaConf.update(cfg, "model.style_codebook", OmegaConf.to_container(node), force_add=True)
        OmegaConf.update(cfg, "model.predictor.style_dim", int(node.dim), force_add=True)
        c = cfg.model.pose_codebook
        self.window = int(c.tokens) * 2 ** int(c.quant_factor)  # 32 frames
        if int(cfg.model.predictor.audio_steps) != self.window:
            raise ConfigError(f"model.predictor.audio_steps={cfg.model.predictor.audio_steps} must equal the pose "
                              f"codebook's window of {self.window} frames")
        style_frames = int(node.tokens) * 2 ** int(node.quant_factor)
        if style_frames > 2 * self.window:
            raise ConfigError(f"the style encoder reads {style_frames} frames, more than the {2 * self.window}-frame items")

    def state_dict(self) -> dict:
        return {"codebook_until": self.phase.until}

    def load_state_dict(self, state: dict) -> None:
        self.phase.until = state.get("codebook_until")

    def split_dataset(self, split: str) -> ClipWindowDataset:
        d = self.cfg.data
        return ClipWindowDataset(d.root, split=split, window_frames=2 * self.window, speakers=d.speakers,
                                 seed=int(self.cfg.seed), skip_damaged=bool(d.skip_damaged), with_mel=False,
                                 with_mfcc=True)

    def build_modules(self) -> dict[str, nn.Module]:
        m = self.cfg.model
        style = self.style_run.module("codebook", self.style_run.config.model.codebook)
        style.requires_grad_(False)
        return {"pose_codebook": instantiate(m.pose_codebook), "predictor": instantiate(m.predictor),
                "style_codebook": style}

    def build_optimizers(self, modules):
        s = self.cfg.stage
        return {name: torch.optim.Adam(modules[name].parameters(), lr=float(s.lr), betas=tuple(s.betas))
                for name in ("pose_codebook", "predictor")}

    # -- pieces ---------------------------------------------------------------------------

    def codebook_phase(self, ctx: StepContext) -> bool:
        """Whether this step still trains the pose codebook; freezes it at the first step that does not."""
        if self.phase.active(ctx):
            return True
        codebook = unwrap(ctx.modules["pose_codebook"])
        if any(p.requires_grad for p in codebook.parameters()):  # once per process (also after resuming)
            codebook.requires_grad_(False).eval()
        return False

    def tokens(self, codebook: nn.Module, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Poses [B, 64, 6] -> (past [B, 4], future [B, 4]) code ids of the two 32-frame halves."""
        b = poses.shape[0]
        with torch.no_grad():
            ids = unwrap(codebook).encode(torch.cat([poses[:, :self.window], poses[:, self.window:]]))["indices"]
        past, future = ids.view(2, b, -1)
        return past, future

    def predictor_terms(self, predictor: nn.Module, codebook: nn.Module, style_codebook: nn.Module, batch: dict,
                        mask_index: int) -> dict[str, torch.Tensor]:
        """Cross-entropy and token accuracy of the predictor on a batch."""
        past, future = self.tokens(codebook, pose_of(batch["coeffs"]))
        with torch.no_grad():
            style_codebook = unwrap(style_codebook)  # its window: the item's last 32 frames (the future half)
            style = style_codebook.encode(batch["exp"][:, -style_codebook.frames:])["code"]
        logits = predictor(batch["mfcc"][:, self.window:], style, past, mask_index)[:, :future.shape[1]]
        return {"ce": F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), future.reshape(-1)),
                "token_accuracy": (logits.argmax(-1) == future).float().mean()}

    def codebook_terms(self, codebook: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        poses = pose_of(batch["coeffs"])
        windows = torch.cat([poses[:, :self.window], poses[:, self.window:]])
        out = codebook(windows)
        terms = {"pose_l1": F.l1_loss(out["reconstruction"], windows), "vq_loss": out["vq_loss"]}
        terms["_latent"] = out["latent"]
        terms["perplexity"] = torch.tensor(unwrap(codebook).quantize.perplexity(out["indices"]))
        return terms

    # -- steps ----------------------------------------------------------------------------

    def training_step(self, batch, ctx: StepContext):
        if self.codebook_phase(ctx):  # the official calc_vq_loss_pose: L1 + the VQ loss
            terms = self.codebook_terms(ctx.modules["pose_codebook"], batch)
            loss = terms["pose_l1"] + terms["vq_loss"]
            out = codebook_step(ctx, "pose_codebook", terms, loss, self.cfg.stage)
            return {f"codebook_{k}": v for k, v in out.items()}
        k = sample_mask_index(ctx.generator, unwrap(ctx.modules["predictor"]).past_tokens)
        with ctx.autocast():
            terms = self.predictor_terms(ctx.modules["predictor"], ctx.modules["pose_codebook"],
                                         ctx.modules["style_codebook"], batch, k)
        grad_norm = ctx.optimize("predictor", terms["ce"])
        return {"loss": terms["ce"].detach(), "token_accuracy": terms["token_accuracy"], "grad_norm": grad_norm,
                "mask_index": float(k)}

    @torch.no_grad()
    def validation_step(self, batch, ctx: StepContext):
        m = ctx.eval_modules
        codebook = self.codebook_terms(m["pose_codebook"], batch)
        # the whole past visible (the generation loop's case once 4 tokens exist)
        terms = self.predictor_terms(m["predictor"], m["pose_codebook"], m["style_codebook"], batch,
                                     m["predictor"].past_tokens)
        return {"pose_l1": codebook["pose_l1"], "perplexity": codebook["perplexity"], **terms}
