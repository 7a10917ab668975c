"""Training stage ``pirender``: PIRenderer, StyleTalk's photo-real renderer, on a corpus's real frames.

PIRender's own schedule (RenYurui/PIRender, ``config/face.yaml``): for the first
``stage.warp_steps`` steps only the mapping and warping nets learn, from the warping loss (the
source warped by the flow against the target frame); from then on the editing net learns too,
from the loss on its output plus the warping loss. The weights are PIRender's (``stage.loss``:
VGG-19 perceptual terms 2.5 on the warp, 4 on the output, Adam lr 1e-4, betas (0.5, 0.999)),
with optional L1 terms for runs without ImageNet VGG weights (the CPU recipe). PIRender also
trains each pair in both directions (source -> target and target -> source;
``stage.both_directions``). Not reproduced: the Gram-matrix style term PIRender adds to the
output's perceptual loss (``style_to_perceptual: 250``).

The model's three parts are three modules of the run (``mapping_net``, ``warpping_net``,
``editing_net``, the top-level names of the released ``net_G_ema``; one ``PIRenderer`` built from
``cfg.model.renderer`` and split), so the editing net, which the warping phase never runs, is a
module of its own: under DDP a wrapped module with parameters that get no gradient stops the
run. Its forward is :meth:`PIRenderer.forward` itself, run over the three (wrapped or EMA)
modules. One optimiser (``renderer``) holds every parameter: during the warping phase the
editing net's gradients are None, so Adam leaves it and its moments untouched, as PIRender's does.

Data: :class:`~stylization.data.render_pairs.RenderPairDataset` with real-frame targets
(``targets="real"``: it then carries ``target_real`` and reads no stylised video): a source
frame ``source`` [3, S, S], ``semantic`` windows [K, F, 73, 27] and their real frames
``target_real`` [K, F, 3, S, S], S = ``model.image_size``; no art index is needed. Validation: PSNR and
SSIM of the output (and of the warped source) against the real targets; image grids
source | warped | output | target.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from stylization.constants import SEMANTIC_DIM, WINDOW_FRAMES
from stylization.data.render_inputs import RenderInputs
from stylization.data.render_pairs import SOURCE_FRAMES, TARGET_SAMPLINGS, RenderPairDataset
from stylization.engine.stage import StepContext, TrainingStage, check_adam_options, loss_weights
from stylization.errors import ConfigError
from stylization.loading import load_official, vgg19_features
from stylization.metrics.image import psnr, ssim
from stylization.style_a.losses import VGGPerceptual, check_perceptual_options, perceptual_pyramid
from stylization.styletalk.pirender import PIRenderer

PARTS = ("mapping_net", "warpping_net", "editing_net")  # the run's modules: PIRenderer's children
LOSS_TERMS = ("warp_perceptual", "warp_l1", "final_perceptual", "final_l1")  # the keys of stage.loss


def validate_config(cfg: DictConfig) -> None:
    """Raise a :class:`ConfigError` naming the key for any option that would fail later."""
    s, m = cfg.stage, cfg.model
    r = m.renderer
    size = int(m.image_size)
    if int(s.warp_steps) < 0:
        raise ConfigError(f"stage.warp_steps must be >= 0 (steps of the warping phase), got {s.warp_steps}")
    check_adam_options(s, ("batch_size", "pairs_per_item", "frames_per_item", "items_per_clip"))
    loss_weights(s.loss, LOSS_TERMS)
    if float(s.loss.warp_perceptual) + float(s.loss.warp_l1) <= 0:
        raise ConfigError("stage.loss.warp_perceptual or stage.loss.warp_l1 must be > 0 (the warping loss)")
    if float(s.loss.final_perceptual) + float(s.loss.final_l1) <= 0:
        raise ConfigError("stage.loss.final_perceptual or stage.loss.final_l1 must be > 0 (the editing net's loss)")
    if s.source_frame not in SOURCE_FRAMES:
        raise ConfigError(f"stage.source_frame must be one of {list(SOURCE_FRAMES)}, got {s.source_frame!r}")
    if s.target_sampling not in TARGET_SAMPLINGS:
        raise ConfigError(f"stage.target_sampling must be one of {list(TARGET_SAMPLINGS)}, got {s.target_sampling!r}")
    check_perceptual_options(s, size, float(s.loss.warp_perceptual) + float(s.loss.final_perceptual),
                             "set the perceptual weights of stage.loss to 0")
    if int(r.coeff_nc) != SEMANTIC_DIM:
        raise ConfigError(f"model.renderer.coeff_nc must be {SEMANTIC_DIM} (the corpus's windows), got {r.coeff_nc}")
    if WINDOW_FRAMES - 6 * (int(r.mapping_layers) + 1) < 1:
        raise ConfigError(f"model.renderer.mapping_layers={r.mapping_layers} shrinks a {WINDOW_FRAMES}-frame window "
                          f"to nothing; at most {(WINDOW_FRAMES - 1) // 6 - 1}")
    if not 1 <= int(r.decoder_layers) <= int(r.encoder_layers):
        raise ConfigError(f"model.renderer.decoder_layers must be in 1..encoder_layers={r.encoder_layers}, "
                          f"got {r.decoder_layers}")
    step = 2 ** max(int(r.encoder_layers), int(r.edit_layers))
    if size < step or size % step:
        raise ConfigError(f"model.image_size={size} must be a multiple of {step} (2 ** the deepest of "
                          "model.renderer.encoder_layers and edit_layers)")


def pair_dataset(cfg: DictConfig, split: str, deterministic: bool) -> RenderPairDataset:
    """Real-frame pairs of ``split`` at ``model.image_size``, as ``cfg`` (stage, model, data, seed) says."""
    s, d, size = cfg.stage, cfg.data, int(cfg.model.image_size)
    return RenderPairDataset(
        d.root, split, styles=None, inputs=RenderInputs(size, size, "crop", "none"), out_size=size,
        pairs_per_item=int(s.pairs_per_item), frames_per_item=int(s.frames_per_item),
        items_per_clip=int(s.items_per_clip), targets="real", deterministic=deterministic, seed=int(cfg.seed),
        speakers=d.speakers, source_frame=str(s.source_frame), skip_damaged=bool(d.skip_damaged),
        target_sampling=str(s.target_sampling))


def render(modules: dict[str, nn.Module], source: torch.Tensor, window: torch.Tensor, warp_only: bool = False
           ) -> dict[str, torch.Tensor]:
    """:meth:`PIRenderer.forward` over the stage's three modules (plain, DDP-wrapped or EMA copies):
    source [N, 3, S, S] in [-1, 1], window [N, 73, 27] -> flow, warp_image and (unless
    ``warp_only``) fake_image."""
    return PIRenderer.forward(SimpleNamespace(**{p: modules[p] for p in PARTS}), source, window, warp_only=warp_only)


def pairs(batch: dict, both_directions: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's (source, window, target) triples, B·K·F of them, or 2·B·K·F with ``both_directions``
    (each target frame also renders the source frame from ``source_semantic``):
    sources [N, 3, S, S], windows [N, 73, 27], targets [N, 3, S, S]."""
    n = batch["semantic"].shape[1] * batch["semantic"].shape[2]
    sources = batch["source"].repeat_interleave(n, 0)
    windows, targets = batch["semantic"].flatten(0, 2), batch["target_real"].flatten(0, 2)
    if not both_directions:
        return sources, windows, targets
    back = batch["source_semantic"].repeat_interleave(n, 0)
    return torch.cat([sources, targets]), torch.cat([windows, back]), torch.cat([targets, sources])


class PIRenderStage(TrainingStage):
    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        validate_config(cfg)
        s = cfg.stage
        self.warp_steps = int(s.warp_steps)
        self.weights = loss_weights(s.loss, LOSS_TERMS)
        self.scales = int(s.perceptual_scales)
        self.perceptual = None
        if self.weights["warp_perceptual"] > 0 or self.weights["final_perceptual"] > 0:
            layers = {str(k): float(v) for k, v in s.perceptual_layers.items()}
            self.perceptual = VGGPerceptual(vgg19_features(s.perceptual_weights), layers)

    # -- building -----------------------------------------------------------------------

    def build_modules(self) -> dict[str, nn.Module]:
        renderer = instantiate(self.cfg.model.renderer)
        if self.cfg.stage.checkpoint:
            load_official("pirender", str(self.cfg.stage.checkpoint), renderer)
        return {p: getattr(renderer, p) for p in PARTS}

    def build_optimizers(self, modules):
        s = self.cfg.stage
        params = [p for name in PARTS for p in modules[name].parameters()]
        return {"renderer": torch.optim.Adam(params, lr=float(s.lr), betas=tuple(float(b) for b in s.betas))}

    def train_dataset(self):
        return pair_dataset(self.cfg, str(self.cfg.data.train_split), False)

    def val_dataset(self):
        split = self.cfg.data.val_split
        return None if split is None else pair_dataset(self.cfg, str(split), True)

    # -- steps ----------------------------------------------------------------------------

    def in_warp_phase(self, step: int) -> bool:
        """Steps 0 .. ``stage.warp_steps`` - 1 train the mapping and warping nets alone."""
        return step < self.warp_steps

    def perceptual_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """:func:`perceptual_pyramid` over ``stage.perceptual_scales`` sizes; fake, real [N, 3, H, W] in [-1, 1]."""
        return perceptual_pyramid(self.perceptual, fake, real, self.scales)

    def objective(self, out: dict, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Renderer outputs, targets [N, 3, S, S] -> (weighted total, {term: unweighted value}). The
        ``final_*`` terms need ``fake_image`` (absent in the warping phase); weight-0 terms are skipped."""
        w, terms = self.weights, {}
        images = {"warp": out["warp_image"].float()}
        if "fake_image" in out:
            images["final"] = out["fake_image"].float()
        for prefix, image in images.items():
            if w[f"{prefix}_perceptual"] > 0:
                terms[f"{prefix}_perceptual"] = self.perceptual_loss(image, targets)
            if w[f"{prefix}_l1"] > 0:
                terms[f"{prefix}_l1"] = F.l1_loss(image, targets)
        return sum(w[k] * v for k, v in terms.items()), terms

    def training_step(self, batch, ctx: StepContext):
        warp_only = self.in_warp_phase(ctx.step)
        sources, windows, targets = pairs(batch, bool(self.cfg.stage.both_directions))
        with ctx.autocast():
            out = render(ctx.modules, sources, windows, warp_only)
        loss, terms = self.objective(out, targets)
        grad_norm = ctx.optimize("renderer", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}, "grad_norm": grad_norm,
                "warp_phase": float(warp_only)}

    def _render_forward(self, batch: dict, ctx: StepContext) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """The batch's forward pairs with the evaluation modules -> (sources, outputs, targets)."""
        sources, windows, targets = pairs(batch, False)
        with ctx.autocast():
            out = render(ctx.eval_modules, sources, windows)
        return sources, out, targets

    @torch.no_grad()
    def validation_step(self, batch, ctx: StepContext):
        _, out, targets = self._render_forward(batch, ctx)
        real = (targets + 1) / 2
        fake, warped = ((out[k].float().clamp(-1, 1) + 1) / 2 for k in ("fake_image", "warp_image"))
        return {"psnr": psnr(fake, real).mean(), "ssim": ssim(fake, real).mean(), "l1": (fake - real).abs().mean(),
                "warp_psnr": psnr(warped, real).mean(), "warp_ssim": ssim(warped, real).mean()}

    @torch.no_grad()
    def visualize(self, batch, ctx: StepContext):
        sources, out, targets = self._render_forward(batch, ctx)
        columns = [sources, out["warp_image"].float(), out["fake_image"].float(), targets]
        rows = torch.cat([(c.clamp(-1, 1) + 1) / 2 for c in columns], dim=-1)
        return {"source|warped|output|target": rows[:8]}
