"""Training stage ``saas_codebook``: SAAS's multi-task VQ-VAE style codebook (its first training step).

Items are :class:`~stylization.data.style_clips.StyleClipDataset` windows of 32 frames of
expression with a style window of the same (speaker, emotion) from another clip, a positive window
of that style and a negative window of another style (32 frames each). The codebook
(:class:`~stylization.saas.codebook.VQCodebook`, 64-d input, ``model.codebook.n_codes`` codes, a
class head over the training split's styles) is trained on

    recon · (L1(decoder(tokens), window) + VQ loss) + cls · CE(fc(code), style)
    + trip · max(|a − p| − |a − n| + margin, 0)

with the official weights (recon 10, cls 0.01, trip 0.01; ``stage.loss``) and the paper's margin 5 on
Euclidean code distances (the official trainer's "triplet" mixes MSEs of three pairs; we use the
paper's). The anchor is the window's own code, the positive a window of another clip of its style,
the negative a window of another style.

Codebook use: the perplexity of the batch's codes and of the running usage is logged; every
``stage.reseed_every`` steps, codes used less than ``stage.reseed_threshold`` / n_codes of the time
take encoder outputs of the batch (our addition; 0 turns it off, as the official training).
Validation (held-out speakers): reconstruction L1, perplexity, and the triplet accuracy (how often the
anchor is nearer its positive than its negative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from stylization.data.style_clips import StyleClipDataset, split_styles
from stylization.engine.distributed import unwrap
from stylization.engine.stage import StepContext, TrainingStage, loss_weights
from stylization.errors import ConfigError
from stylization.styletalk.losses import triplet_loss

LOSSES = ("recon", "cls", "trip")


def codebook_terms(model: nn.Module, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                   labels: torch.Tensor, margin: float) -> dict[str, torch.Tensor]:
    """Unweighted losses and diagnostics of the codebook on windows [B, 32, in] (one pass over the
    three): anchors with their style ``labels`` [B] (-1: a style outside the class list, not classified),
    positives of the same style, negatives of another. ``_latent`` is the encoder output for re-seeding."""
    b = anchor.shape[0]
    windows = torch.cat([anchor, positive, negative])
    out = model(windows)
    code_a, code_p, code_n = out["code"].chunk(3)
    terms = {"recon_l1": F.l1_loss(out["reconstruction"], windows), "vq_loss": out["vq_loss"],
             "trip": triplet_loss(code_a, code_p, code_n, margin),
             "trip_accuracy": ((code_a - code_p).norm(dim=-1) < (code_a - code_n).norm(dim=-1)).float().mean(),
             "perplexity": torch.tensor(unwrap(model).quantize.perplexity(out["indices"]))}
    known = labels >= 0
    if known.any():
        logits = out["logits"][:b][known]
        terms["cls"] = F.cross_entropy(logits, labels[known])
        terms["cls_accuracy"] = (logits.argmax(-1) == labels[known]).float().mean()
    terms["recon"] = terms["recon_l1"] + terms["vq_loss"]
    terms["_latent"] = out["latent"]
    return terms


def weighted(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The codebook's loss: :func:`codebook_terms` weighted by ``weights`` (``cls`` only where known)."""
    return sum(weights[k] * terms[k] for k in LOSSES if k in terms)


def codebook_step(ctx: StepContext, name: str, terms: dict[str, torch.Tensor], loss: torch.Tensor, recipe) -> dict:
    """One optimisation step of a VQ codebook (module and optimiser ``name``; the expression codebook
    or the pose codebook) on ``loss``; every ``recipe.reseed_every`` steps its rarely used codes are
    re-seeded with ``terms["_latent"]`` (``recipe``: a stage config with the re-seeding keys). Returns
    the scalars to log: ``terms``, the loss, the grad norm and the running code-use perplexity."""
    latent = terms.pop("_latent")
    grad_norm = ctx.optimize(name, loss)
    quantize = unwrap(ctx.modules[name]).quantize
    out = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, "grad_norm": grad_norm,
           "usage_perplexity": quantize.perplexity()}
    if int(recipe.reseed_every) and (ctx.step + 1) % int(recipe.reseed_every) == 0:
        out["reseeded"] = float(quantize.reseed_dead(latent, float(recipe.reseed_threshold), ctx.generator))
    return out


def check_recipe(recipe) -> None:
    """A :class:`ConfigError` for re-seeding settings out of range (``recipe``: a saas_codebook stage config)."""
    if int(recipe.reseed_every) < 0 or not 0 <= float(recipe.reseed_threshold) < 1:
        raise ConfigError("stage.reseed_every must be >= 0 and stage.reseed_threshold in [0, 1)")


class SAASCodebookStage(TrainingStage):
    """The multi-task VQ-VAE codebook (see the module docstring)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        s = cfg.stage
        self.weights = loss_weights(s.loss, LOSSES)
        check_recipe(s)
        self.styles = split_styles(str(cfg.data.root), str(cfg.data.train_split), cfg.data.speakers)
        if len(self.styles) < 2:
            raise ConfigError("the training split has fewer than two (speaker, emotion) styles; the triplet and the "
                              "class head need several")
        # the class head's size comes from the data; recorded in the config the checkpoints save
        OmegaConf.update(cfg, "model.codebook.classes", len(self.styles), force_add=True)

    @property
    def window_frames(self) -> int:
        """32 at the released size: tokens × 2^quant_factor."""
        c = self.cfg.model.codebook
        return int(c.tokens) * 2 ** int(c.quant_factor)

    def split_dataset(self, split: str) -> StyleClipDataset:
        d = self.cfg.data
        styles = self.styles if split == str(d.train_split) else None
        return StyleClipDataset(d.root, split, self.window_frames, self.window_frames, styles,
                                float(self.cfg.stage.hard_negative), d.speakers, int(self.cfg.seed), with_phonemes=False)

    def build_modules(self) -> dict[str, nn.Module]:
        return {"codebook": instantiate(self.cfg.model.codebook)}

    def build_optimizers(self, modules):
        s = self.cfg.stage
        return {"codebook": torch.optim.Adam(modules["codebook"].parameters(), lr=float(s.lr), betas=tuple(s.betas))}

    def terms(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Unweighted losses and diagnostics of a batch (see :func:`codebook_terms`)."""
        return codebook_terms(model, batch["exp"], batch["positive_exp"], batch["negative_exp"], batch["style_label"],
                              float(self.cfg.stage.triplet_margin))

    def training_step(self, batch, ctx: StepContext):
        terms = self.terms(ctx.modules["codebook"], batch)
        return codebook_step(ctx, "codebook", terms, weighted(terms, self.weights), self.cfg.stage)

    @torch.no_grad()
    def validation_step(self, batch, ctx: StepContext):
        terms = self.terms(ctx.eval_modules["codebook"], batch)
        terms.pop("_latent")
        terms.pop("cls", None)
        terms.pop("cls_accuracy", None)  # held-out speakers: styles the class head never saw
        return terms
