"""Training stage ``saas``: SAAS's audio-driven, style-aware expression generator (its second step).

Items (:class:`~stylization.data.style_clips.StyleTransferDataset`): a 32-frame source window A with
its mel windows, blinks and a source frame's expression, and windows of another style B (the style
to transfer to), a positive of B's style and a negative of another style.

The generator (:class:`~stylization.saas.model.SAASGenerator`, ``source="audio"``) makes, from A's
sound and A's style code s_A (the style encoder on A's window, as the official trainer does):

* ``transfer`` = decoder(ra(z, s_B), s_B), A's speech in style B (no ground truth), and
* ``recon`` = decoder(ra(z, s_A), s_A), A itself (self-driven),

with z = audio encoder(A's mel, source frame, s_A). The style encoder and the codebook come from a
``saas_codebook`` run (``stage.codebook``) and stay frozen; the codebook's encoder and class head
also judge the outputs.

Without ``stage.codebook`` the run trains its own codebook first (``model.codebook``, with the
saas_codebook stage's losses and re-seeding under ``stage.codebook_phase``): on B's windows (anchor
B, its positive, the negative; B's style label) for ``stage.codebook_steps`` steps or, with
``trainer.max_minutes``, until ``stage.codebook_share`` of the budget is spent, whichever comes first.
Then the codebook is frozen, its encoder parts are copied into the generator's style encoder (and its
EMA copy), and the generator's training below begins; the switch step is saved with the checkpoints.

Generator losses (weights ``stage.loss``, the official ones):

* ``recon`` 1000: MSE of the face model's 68 keypoints of ``recon`` against A's, plus Soft-DTW
  (γ ``stage.soft_dtw_gamma`` = 0.001, tslearn) between ``recon``'s mouth coefficients (0-17) and A's;
* ``mouth`` 20: L1 between squared lip gaps (pairs 51-57 and 62-66) of each output and of A;
* ``cls`` 50: cross-entropy of the codebook's class head on the outputs' codes (B for ``transfer``,
  A for ``recon``);
* ``dis`` 50: least-squares GAN against a style discriminator conditioned on the style (the channel
  of the label of a 1D PatchGAN with one output per style);
* ``trip`` 10: triplets on codes, margin ``stage.triplet_margin`` = 5: code(transfer) nearer B's
  positive window than the negative one, and code(recon) nearer A than B;
* ``tem`` 1: least-squares GAN against a temporal PatchGAN.

The discriminators' step (each generator step): temporal: real A and B -> 1, outputs -> 0; style:
(A, s_A) and (B, s_B) -> 1, the outputs with their styles -> −1 (the official targets), plus an R1
penalty on the real windows (weight ``stage.r1_gamma``).

Validation: M-LMD / F-LMD of ``recon`` (true identity and pose, pixels of a 256 frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from stylization.constants import COEFF_SLICES, LIP_OPENING_PAIRS
from stylization.data.datasets import ClipWindowDataset
from stylization.data.style_clips import StyleTransferDataset, split_styles
from stylization.engine.distributed import unwrap
from stylization.engine.stage import FirstPhase, StepContext, loss_weights
from stylization.errors import ConfigError
from stylization.runs import load_run
from stylization.saas.adapter import MOUTH_COEFFS
from stylization.saas.codebook_stage import LOSSES as CODEBOOK_LOSSES
from stylization.saas.codebook_stage import check_recipe, codebook_step, codebook_terms, weighted
from stylization.style_e.window_stage import WindowStage
from stylization.styletalk.losses import triplet_loss

LOSSES = ("recon", "mouth", "cls", "dis", "trip", "tem")
CODEBOOK_HINT = "train one with: python train.py stage=saas_codebook model=saas_codebook_small data.root=DIR"
STYLE_ENCODER_PARTS = ("encoder", "quantize", "self_attention")  # the codebook's parts the style encoder has


def lip_gaps_squared(keypoints: torch.Tensor) -> torch.Tensor:
    """[..., 68, 3] -> [..., 2] squared distances of the outer and inner lip pairs (SAAS's mouth measure)."""
    upper = keypoints[..., [a for a, _ in LIP_OPENING_PAIRS], :]
    lower = keypoints[..., [b for _, b in LIP_OPENING_PAIRS], :]
    return (upper - lower).pow(2).sum(-1)


class SAASStage(WindowStage):
    """SAAS's audio-driven generator with its discriminators (see the module docstring)."""

    losses = LOSSES        # the keys of stage.loss
    source = "audio"       # model.generator.source
    with_mel = True        # whether items carry mel windows

    def __init__(self, cfg):
        super().__init__(cfg)
        s = cfg.stage
        self.weights = loss_weights(s.loss, self.losses)
        if str(cfg.model.generator.source) != self.source:
            raise ConfigError(f"stage={s.name} trains a generator driven by {self.source}, but "
                              f"model.generator.source={cfg.model.generator.source}; use model={s.name}_small or "
                              f"model={s.name}")
        self.inline = s.codebook is None
        self.phase = FirstPhase(s.codebook_steps, s.codebook_share, "codebook") if self.inline else None
        if self.inline:
            check_recipe(s.codebook_phase)
            self.codebook_weights = loss_weights(s.codebook_phase.loss, CODEBOOK_LOSSES)
            self.styles = split_styles(str(cfg.data.root), str(cfg.data.train_split), cfg.data.speakers)
            if len(self.styles) < 2:
                raise ConfigError("the training split has fewer than two (speaker, emotion) styles; the codebook's "
                                  "triplet and class head need several")
            OmegaConf.update(cfg, "model.codebook.classes", len(self.styles), force_add=True)
            node = cfg.model.codebook
        else:
            run = load_run(str(s.codebook), hint=CODEBOOK_HINT)
            if run.stage != "saas_codebook":
                raise ConfigError(f"stage.codebook={s.codebook} is a {run.stage!r} run; {CODEBOOK_HINT}")
            self.codebook_run = run
            d = run.config.data  # the codebook's class list: its training split's styles
            self.styles = split_styles(str(d.root), str(d.train_split), d.speakers)
            node = run.config.model.codebook
            # the run's codebook is what this run judges with: recorded so that the config describes the checkpoints
            OmegaConf.update(cfg, "model.codebook", OmegaConf.to_container(node), force_add=True)
        self.codebook_node = node
        # The generator's style encoder is the codebook's encoder: its size is the codebook's and is recorded
        # in the config the checkpoints save (so the run rebuilds without the codebook run), as is D_style's.
        keys = ("in_dim", "dim", "layers", "heads", "ffn", "quant_factor", "tokens", "n_codes", "beta", "use_codebook")
        OmegaConf.update(cfg, "model.generator.style_encoder", {k: node[k] for k in keys}, force_add=True)
        if int(cfg.model.generator.style_dim) != int(node.dim):
            raise ConfigError(f"model.generator.style_dim={cfg.model.generator.style_dim} but the codebook's codes "
                              f"are {node.dim}-d; set model.generator.style_dim={node.dim} (and latent_dim={int(node.dim) // 4})")
        OmegaConf.update(cfg, "model.style_discriminator.outputs", len(self.styles), force_add=True)
        from tslearn.metrics import SoftDTWLossPyTorch

        self.soft_dtw = SoftDTWLossPyTorch(gamma=float(s.soft_dtw_gamma))

    @property
    def window_frames(self) -> int:
        return int(self.codebook_node.tokens) * 2 ** int(self.codebook_node.quant_factor)

    def state_dict(self) -> dict:
        return {"codebook_until": None if self.phase is None else self.phase.until}

    def load_state_dict(self, state: dict) -> None:
        if self.phase is not None:
            self.phase.until = state.get("codebook_until")

    def split_dataset(self, split: str) -> StyleTransferDataset:
        d = self.cfg.data
        base = ClipWindowDataset(d.root, split=split, window_frames=self.window_frames, speakers=d.speakers,
                                 seed=int(self.cfg.seed), skip_damaged=bool(d.skip_damaged), with_mel=self.with_mel)
        return StyleTransferDataset(base, self.styles, float(self.cfg.stage.hard_negative))

    # -- building -------------------------------------------------------------------------

    def build_modules(self) -> dict[str, nn.Module]:
        m = self.cfg.model
        generator = instantiate(m.generator)
        generator.style_encoder.requires_grad_(False)
        if self.inline:
            codebook = instantiate(m.codebook)  # trained first, then frozen and copied (training_step)
        else:
            codebook = self.codebook_run.module("codebook", self.codebook_node)
            codebook.requires_grad_(False)
            self.copy_style_encoder(codebook, generator)
        return {"generator": generator, "codebook": codebook,
                "style_discriminator": instantiate(m.style_discriminator),
                "temporal_discriminator": instantiate(m.temporal_discriminator, outputs=1)}

    def build_optimizers(self, modules):
        s = self.cfg.stage
        trainable = [p for p in modules["generator"].parameters() if p.requires_grad]
        discriminators = list(modules["style_discriminator"].parameters()) + \
            list(modules["temporal_discriminator"].parameters())
        optimizers = {"generator": torch.optim.Adam(trainable, lr=float(s.lr), betas=tuple(s.betas)),
                      "discriminators": torch.optim.Adam(discriminators, lr=float(s.lr), betas=tuple(s.betas))}
        if self.inline:
            c = s.codebook_phase
            optimizers["codebook"] = torch.optim.Adam(modules["codebook"].parameters(), lr=float(c.lr),
                                                      betas=tuple(c.betas))
        return optimizers

    # -- the in-run codebook phase ----------------------------------------------------------

    @staticmethod
    def copy_style_encoder(codebook: nn.Module, generator: nn.Module) -> None:
        """The codebook's encoder, quantiser and pooling -> the generator's style encoder (strictly)."""
        own = {k: v for k, v in codebook.state_dict().items() if k.split(".")[0] in STYLE_ENCODER_PARTS}
        generator.style_encoder.load_state_dict(own, strict=True)

    def codebook_phase(self, ctx: StepContext) -> bool:
        """Whether this step still trains the in-run codebook; ends the phase (freezes the codebook and
        copies it into the generator and its EMA copy) at the first step that does not."""
        if self.phase is None:
            return False
        if self.phase.active(ctx):
            return True
        codebook = unwrap(ctx.modules["codebook"])
        if any(p.requires_grad for p in codebook.parameters()):  # once per process (also after resuming)
            codebook.requires_grad_(False).eval()
            if ctx.step == self.phase.until:
                for g in {id(x): x for x in (unwrap(ctx.modules["generator"]), ctx.eval_modules["generator"])}.values():
                    self.copy_style_encoder(codebook, g)
        return False

    # -- pieces ---------------------------------------------------------------------------

    def keypoints(self, exp: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
        """Expressions [B, T, 64] with the clip's identity -> the face model's keypoints [B, T, 68, 3]."""
        fm = self.face_model.to(exp.device)
        return fm.keypoints_3d(coeffs[..., COEFF_SLICES["id"]], exp.float())

    @staticmethod
    @torch.no_grad()
    def style_codes(generator: nn.Module, batch: dict, *keys: str) -> list[torch.Tensor]:
        """The frozen style encoder's codes [B, D] of the batch's windows ``keys`` (one pass)."""
        codes = unwrap(generator).style(torch.cat([batch[k] for k in keys]))
        return list(codes.chunk(len(keys)))

    def generate(self, generator: nn.Module, batch: dict, s_a: torch.Tensor, s_b: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of A's and B's windows [B, D] -> (transfer [B, T, 64] in B's style, recon [B, T, 64] in A's)."""
        b = s_a.shape[0]
        source = dict(mel=batch["mel"].repeat(2, 1, 1, 1, 1), source_exp=batch["source_exp"].repeat(2, 1),
                      blink=batch["blink"].repeat(2, 1))
        out = generator(torch.cat([s_b, s_a]), torch.cat([s_a, s_a]), **source)
        return out[:b], out[b:]

    def sequence_terms(self, recon: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reconstruction's terms besides the keypoints: Soft-DTW on the mouth coefficients."""
        return {"recon_dtw": self.soft_dtw(recon[..., :MOUTH_COEFFS], truth[..., :MOUTH_COEFFS]).mean()}

    def extra_terms(self, generator: nn.Module, batch: dict, transfer: torch.Tensor, c_a: torch.Tensor,
                    c_b: torch.Tensor, kp_true: torch.Tensor) -> dict[str, torch.Tensor]:
        """Terms a subclass adds (weighted by their ``stage.loss`` keys); none here."""
        return {}

    @staticmethod
    def conditional(disc: nn.Module, exp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The style discriminator's logits [B, L'] at each window's style channel (a style the codebook
        run never saw, label -1, reads channel 0)."""
        logits = disc(exp)
        return logits.gather(1, labels.clamp_min(0)[:, None, None].expand(-1, 1, logits.shape[-1]))[:, 0]

    # -- steps ----------------------------------------------------------------------------

    def training_step(self, batch, ctx: StepContext):
        if self.codebook_phase(ctx):
            phase = self.cfg.stage.codebook_phase
            terms = codebook_terms(ctx.modules["codebook"], batch["style_exp"], batch["positive_exp"],
                                   batch["negative_exp"], batch["style_label"], float(phase.triplet_margin))
            loss = weighted(terms, self.codebook_weights)
            return {f"codebook_{k}": v for k, v in codebook_step(ctx, "codebook", terms, loss, phase).items()}
        w, s = self.weights, self.cfg.stage
        g, codebook = ctx.modules["generator"], unwrap(ctx.modules["codebook"])
        d_style, d_tem = ctx.modules["style_discriminator"], ctx.modules["temporal_discriminator"]
        label_a, label_b = batch["source_label"], batch["style_label"]
        # the style encoder is the frozen codebook's: the real windows' codes are constants, computed once
        c_a, c_b, c_pos, c_neg = self.style_codes(g, batch, "exp", "style_exp", "positive_exp", "negative_exp")
        with ctx.autocast():
            transfer, recon = (x.float() for x in self.generate(g, batch, c_a, c_b))
        truth = batch["exp"]
        # -- generator
        kp_true = self.keypoints(truth, batch["coeffs"])
        kp_recon = self.keypoints(recon, batch["coeffs"])
        kp_transfer = self.keypoints(transfer, batch["coeffs"])
        terms = {"recon_kp": F.mse_loss(kp_recon, kp_true), **self.sequence_terms(recon, truth)}
        terms["recon"] = sum(terms.values())
        terms.update(self.extra_terms(g, batch, transfer, c_a, c_b, kp_true))
        gaps = lip_gaps_squared(kp_true)
        terms["mouth"] = F.l1_loss(lip_gaps_squared(kp_transfer), gaps) + F.l1_loss(lip_gaps_squared(kp_recon), gaps)
        c_transfer, c_recon = codebook.encode(torch.cat([transfer, recon]))["code"].chunk(2)  # judged by the codebook
        logits_transfer, logits_recon = codebook.fc(torch.cat([c_transfer, c_recon])).chunk(2)
        known_a, known_b = label_a >= 0, label_b >= 0
        terms["cls"] = 0.5 * (F.cross_entropy(logits_transfer[known_b], label_b[known_b]) if known_b.any() else 0.0) + \
            0.5 * (F.cross_entropy(logits_recon[known_a], label_a[known_a]) if known_a.any() else 0.0)
        terms["trip"] = triplet_loss(c_transfer, c_pos, c_neg, float(s.triplet_margin)) + \
            triplet_loss(c_recon, c_a, c_b, float(s.triplet_margin))
        terms["dis"] = (self.conditional(d_style, transfer, label_b) - 1).pow(2).mean() + \
            (self.conditional(d_style, recon, label_a) - 1).pow(2).mean()
        terms["tem"] = 0.5 * ((d_tem(transfer) - 1).pow(2).mean() + (d_tem(recon) - 1).pow(2).mean())
        loss = sum(w[k] * terms[k] for k in self.losses if w[k] > 0)
        grad_norm = ctx.optimize("generator", loss)
        out = {"loss": loss.detach(), **{k: torch.as_tensor(v).detach() for k, v in terms.items()}, "grad_norm": grad_norm}
        # -- discriminators
        fakes = (transfer.detach(), recon.detach())
        reals = (truth, batch["style_exp"])
        d_tem_loss = 0.5 * sum((d_tem(r) - 1).pow(2).mean() for r in reals) + \
            0.25 * sum(d_tem(f).pow(2).mean() for f in fakes)
        real_windows = [r.detach().requires_grad_(float(s.r1_gamma) > 0) for r in reals]
        real_scores = [self.conditional(d_style, r, lab) for r, lab in zip(real_windows, (label_a, label_b))]
        d_style_loss = sum((sc - 1).pow(2).mean() for sc in real_scores) + \
            0.5 * sum((self.conditional(d_style, f, lab) + 1).pow(2).mean() for f, lab in zip(fakes, (label_b, label_a)))
        r1 = torch.zeros(())
        if float(s.r1_gamma) > 0:
            grads = torch.autograd.grad(sum(sc.sum() for sc in real_scores), real_windows, create_graph=True)
            r1 = sum(gr.pow(2).flatten(1).sum(1).mean() for gr in grads)
        ctx.optimize("discriminators", d_tem_loss + d_style_loss + 0.5 * float(s.r1_gamma) * r1)
        out.update(d_tem=d_tem_loss.detach(), d_style=d_style_loss.detach(), r1=r1.detach())
        return out

    @torch.no_grad()
    def predict(self, batch, ctx: StepContext) -> torch.Tensor:
        """The EMA generator's ``recon`` (A's sound in A's own style): [B, T, 64]."""
        g = ctx.eval_modules["generator"]
        return self.generate(g, batch, *self.style_codes(g, batch, "exp", "style_exp"))[1].float()
