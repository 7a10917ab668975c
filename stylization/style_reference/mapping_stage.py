"""Training stage ``style_ref_mapping``: the Style Mapping (Pham et al., CVPRW 2024, §3.3, §5.2) by
self-reenactment, as face-vid2vid trains its model.

Data: :class:`~stylization.data.render_pairs.RenderPairDataset` with real-frame targets: an item is a
source frame of a clip (the neutral image) and ``stage.pairs`` single driving frames of the same clip
(the references; one clip decode serves them all), at ``model.image_size``, with the corpus's fitted
head pose of each (the ``angle`` rows, (pitch, yaw, roll) radians, of the frames' renderer windows).
The source's neutral state is computed once per item and mapped onto its driving frames
(:meth:`StyleMapping.forward_from_state`). Frames are [-1, 1] in the dataset and [0, 1] in the model:
:func:`pairs` converts.

Losses (``stage.loss``; weight 0 skips a term): L1 and VGG-19 perceptual (``stage.perceptual_scales``
scales) of the ISP against the driving frame; LSGAN with a multi-scale PatchGAN (``discriminator``,
trained when ``gan`` > 0); keypoint equivariance: the source's keypoints C_k and those of a randomly
rotated and shifted copy of it must agree once mapped back (x and y, L1); face-vid2vid's keypoint
prior (pairs closer than ``keypoint_prior_distance`` in squared distance pushed apart, mean depth near
``keypoint_prior_depth``); head pose (cross-entropy on Hopenet's 66 bins + MSE of the expected angles,
against the corpus's angles, for the source and the driving frames); the deformation prior, mean |ε|.
One Adam (``mapping``) for the Style Mapping, one (``discriminator``) for the discriminator.

Validation on the validation split's speakers: L1 and PSNR of the ISP against the driving frame, the
same for copying the source frame (``copy_l1``, ``copy_psnr``: the model should beat them), and the
mean absolute error of the driving frames' predicted angles (degrees). Grids: source | driving | ISP.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig

from stylization.constants import COEFF_SLICES, SEMANTIC_PARTS, WINDOW_RADIUS
from stylization.data.render_inputs import RenderInputs
from stylization.data.render_pairs import SOURCE_FRAMES, RenderPairDataset
from stylization.engine.distributed import unwrap
from stylization.engine.stage import StepContext, TrainingStage, check_adam_options, loss_weights
from stylization.errors import ConfigError
from stylization.loading import vgg19_features
from stylization.metrics.image import psnr
from stylization.style_a.losses import VGGPerceptual, check_perceptual_options, perceptual_pyramid
from stylization.style_reference.gan import lsgan_d_loss, lsgan_g_loss
from stylization.style_reference.mapping import angle_bins, angles_from_logits

LOSS_TERMS = ("l1", "perceptual", "gan", "equivariance", "keypoint_prior", "pose_bins", "pose_angles", "deformation")
ANGLE_NAMES = ("pitch", "yaw", "roll")  # the corpus's angle columns, in order


def _semantic_rows(part: str) -> slice:
    """Rows of ``part`` in the renderer's per-frame semantic vector (``SEMANTIC_PARTS`` order)."""
    start = 0
    for name in SEMANTIC_PARTS:
        size = COEFF_SLICES[name].stop - COEFF_SLICES[name].start
        if name == part:
            return slice(start, start + size)
        start += size
    raise KeyError(part)


ANGLE_ROWS = _semantic_rows("angle")


def validate_config(cfg: DictConfig) -> None:
    """Raise a :class:`ConfigError` naming the key for any option that would fail later."""
    s, m = cfg.stage, cfg.model
    check_adam_options(s, ("batch_size", "pairs", "items_per_clip"))
    weights = loss_weights(s.loss, LOSS_TERMS)
    if weights["l1"] + weights["perceptual"] <= 0:
        raise ConfigError("stage.loss.l1 or stage.loss.perceptual must be > 0 (the reconstruction of the driving "
                          "frame)")
    if s.source_frame not in SOURCE_FRAMES:
        raise ConfigError(f"stage.source_frame must be one of {list(SOURCE_FRAMES)}, got {s.source_frame!r}")
    for key in ("keypoint_prior_distance", "equivariance_rotation_deg", "equivariance_translation"):
        if float(s[key]) < 0:
            raise ConfigError(f"stage.{key} must be >= 0, got {s[key]}")
    size = int(m.image_size)
    check_perceptual_options(s, size, float(weights["perceptual"]), "set stage.loss.perceptual to 0")
    parts = m.mapping
    step = 2 ** (int(parts.generator.down_levels) + int(parts.warping.levels))
    if size < step or size % step:
        raise ConfigError(f"model.image_size={size} must be a multiple of {step} (2 ** (model.mapping.generator."
                          "down_levels + model.mapping.warping.levels))")
    kp = parts.keypoint_extractor
    scaled = size * float(kp.input_scale)
    if scaled != int(scaled) or int(scaled) % 2 ** int(kp.levels) or scaled < 2 ** int(kp.levels):
        raise ConfigError(f"model.image_size={size} x model.mapping.keypoint_extractor.input_scale={kp.input_scale} "
                          f"must be a multiple of 2 ** keypoint_extractor.levels = {2 ** int(kp.levels)}")


def pair_dataset(cfg: DictConfig, split: str, deterministic: bool) -> RenderPairDataset:
    """Source frames with ``stage.pairs`` single driving frames each, real frames of ``split`` at
    ``model.image_size``."""
    s, d, size = cfg.stage, cfg.data, int(cfg.model.image_size)
    return RenderPairDataset(
        d.root, split, styles=None, inputs=RenderInputs(size, size, "crop", "none"), out_size=size,
        pairs_per_item=int(s.pairs), frames_per_item=1, items_per_clip=int(s.items_per_clip), targets="real",
        deterministic=deterministic, seed=int(cfg.seed), speakers=d.speakers, source_frame=str(s.source_frame),
        skip_damaged=bool(d.skip_damaged))


def pairs(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of B items with P driving frames each -> sources [B, 3, S, S] and drivings [B·P, 3, S, S]
    in [0, 1] (source i's drivings at rows i·P ... i·P + P - 1), and their corpus angles (pitch, yaw,
    roll) in radians, [B, 3] and [B·P, 3]."""
    sources = (batch["source"] + 1) / 2
    drivings = (batch["target_real"].flatten(0, 2) + 1) / 2
    source_angles = batch["source_semantic"][:, ANGLE_ROWS, WINDOW_RADIUS]
    driving_angles = batch["semantic"].flatten(0, 2)[:, ANGLE_ROWS, WINDOW_RADIUS]
    return sources, drivings, source_angles, driving_angles


def random_affine(n: int, max_rotation: float, max_translation: float, generator: torch.Generator) -> torch.Tensor:
    """[n, 2, 3] ``F.affine_grid`` matrices: a rotation uniform in +-``max_rotation`` radians and a
    translation uniform in +-``max_translation`` per axis (normalised units), drawn from ``generator``."""
    u = torch.rand(n, 3, generator=generator, device=generator.device) * 2 - 1
    angle, shift = u[:, 0] * max_rotation, u[:, 1:] * max_translation
    cos, sin = angle.cos(), angle.sin()
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], -1), torch.stack([sin, cos, shift[:, 1]], -1)], 1)


def keypoint_prior(keypoints: torch.Tensor, distance: float, depth: float) -> torch.Tensor:
    """face-vid2vid's prior on keypoints [B, K, 3]: sum over pairs i != j of max(0, distance - |C_i - C_j|²)
    plus |mean_k z_k - depth|, averaged over the batch."""
    sq = (keypoints[:, :, None] - keypoints[:, None]).pow(2).sum(-1)  # [B, K, K]
    apart = F.relu(distance - sq).sum((-2, -1)) - distance * keypoints.shape[1]  # less the diagonal's i == j
    return (apart + (keypoints[..., 2].mean(-1) - depth).abs()).mean()


def pose_terms(poses: list[dict], angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose-network outputs (their batches concatenated) and the corpus's (pitch, yaw, roll) [N, 3] ->
    (cross-entropy over the 66 bins, MSE of the expected angles in radians), averaged over the three angles."""
    ce, mse = [], []
    for i, name in enumerate(ANGLE_NAMES):
        logits = torch.cat([p[name] for p in poses]).float()
        ce.append(F.cross_entropy(logits, angle_bins(angles[:, i])))
        mse.append(F.mse_loss(angles_from_logits(logits), angles[:, i].float()))
    return torch.stack(ce).mean(), torch.stack(mse).mean()


class StyleMappingStage(TrainingStage):
    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        validate_config(cfg)
        s = cfg.stage
        self.weights = loss_weights(s.loss, LOSS_TERMS)
        self.pairs = int(s.pairs)
        self.scales = int(s.perceptual_scales)
        self.perceptual = None
        if self.weights["perceptual"] > 0:
            layers = {str(k): float(v) for k, v in s.perceptual_layers.items()}
            self.perceptual = VGGPerceptual(vgg19_features(s.perceptual_weights), layers)

    # -- building -----------------------------------------------------------------------

    def build_modules(self):
        m = self.cfg.model
        return {"mapping": instantiate(m.mapping), "discriminator": instantiate(m.discriminator)}

    def build_optimizers(self, modules):
        s = self.cfg.stage
        betas = tuple(float(b) for b in s.betas)
        return {name: torch.optim.Adam(modules[name].parameters(), lr=float(s.lr), betas=betas)
                for name in ("mapping", "discriminator")}

    def split_dataset(self, split: str):
        return pair_dataset(self.cfg, split, deterministic=split != str(self.cfg.data.train_split))

    # -- losses ---------------------------------------------------------------------------

    def perceptual_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """:func:`perceptual_pyramid` over ``stage.perceptual_scales`` sizes; fake, real in [0, 1]."""
        return perceptual_pyramid(self.perceptual, fake * 2 - 1, real * 2 - 1, self.scales)

    def equivariance_loss(self, model, sources: torch.Tensor, keypoints: torch.Tensor,
                          ctx: StepContext) -> torch.Tensor:
        """The sources [B, 3, S, S] moved by a random affine A (the moved image at p shows the source at A·p)
        must give keypoints C' with A·C'_xy = C_xy (the sources' keypoints [B, K, 3]); L1 over x and y."""
        s = self.cfg.stage
        theta = random_affine(sources.shape[0], math.radians(float(s.equivariance_rotation_deg)),
                              float(s.equivariance_translation), ctx.generator)
        grid = F.affine_grid(theta, list(sources.shape), align_corners=True)
        moved = F.grid_sample(sources, grid, padding_mode="border", align_corners=True)
        with ctx.autocast():
            # the same parameters as the step's forward, outside DDP's forward: their gradients join the
            # forward's in the one backward (as saas/pose_stage.py's codebook encode)
            moved_kp = model.image_keypoints(moved)["keypoints"].float()
        back = moved_kp[..., :2] @ theta[:, :, :2].transpose(-1, -2) + theta[:, None, :, 2]
        return (back - keypoints[..., :2].float()).abs().mean()

    def objective(self, out: dict, sources, drivings, source_angles, driving_angles, ctx: StepContext):
        """The Style Mapping's weighted loss and its unweighted terms (weight-0 terms are not computed)."""
        w, s, terms = self.weights, self.cfg.stage, {}
        fake = out["image"].float()
        kp_sources = out["kp_neutral"][:: self.pairs].float()  # each source's C_k once
        if w["l1"] > 0:
            terms["l1"] = F.l1_loss(fake, drivings)
        if w["perceptual"] > 0:
            terms["perceptual"] = self.perceptual_loss(fake, drivings)
        if w["gan"] > 0:
            with ctx.autocast():
                terms["gan"] = lsgan_g_loss(ctx.modules["discriminator"](fake))
        if w["equivariance"] > 0:
            terms["equivariance"] = self.equivariance_loss(unwrap(ctx.modules["mapping"]), sources, kp_sources, ctx)
        if w["keypoint_prior"] > 0:
            terms["keypoint_prior"] = keypoint_prior(kp_sources, float(s.keypoint_prior_distance),
                                                     float(s.keypoint_prior_depth))
        if w["pose_bins"] > 0 or w["pose_angles"] > 0:
            source_pose = {k: v[:: self.pairs] for k, v in out["pose_neutral"].items()}
            ce, mse = pose_terms([source_pose, out["pose_reference"]], torch.cat([source_angles, driving_angles]))
            terms.update({k: v for k, v in (("pose_bins", ce), ("pose_angles", mse)) if w[k] > 0})
        if w["deformation"] > 0:
            terms["deformation"] = 0.5 * (out["pose_neutral"]["expression"].float().abs().mean()
                                          + out["pose_reference"]["expression"].float().abs().mean())
        return sum(w[k] * v for k, v in terms.items()), terms

    # -- steps ----------------------------------------------------------------------------

    def training_step(self, batch, ctx: StepContext):
        sources, drivings, source_angles, driving_angles = pairs(batch)
        model = ctx.modules["mapping"]
        with ctx.autocast():
            out = model(sources, drivings)
        loss, terms = self.objective(out, sources, drivings, source_angles, driving_angles, ctx)
        logs = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()},
                "grad_norm": ctx.optimize("mapping", loss)}
        if self.weights["gan"] > 0:
            disc = ctx.modules["discriminator"]
            with ctx.autocast():
                d_loss = lsgan_d_loss(disc(drivings), disc(out["image"].detach()))
            ctx.optimize("discriminator", d_loss)
            logs["d_loss"] = d_loss.detach()
        return logs

    def _forward(self, batch: dict, ctx: StepContext):
        """The batch through the evaluation (EMA) Style Mapping -> sources, drivings, outputs, driving angles."""
        sources, drivings, _, driving_angles = pairs(batch)
        with ctx.autocast():
            out = ctx.eval_modules["mapping"](sources, drivings)
        return sources, drivings, out, driving_angles

    @torch.no_grad()
    def validation_step(self, batch, ctx: StepContext):
        sources, drivings, out, angles = self._forward(batch, ctx)
        fake = out["image"].float().clamp(0, 1)
        copy = sources.repeat_interleave(self.pairs, 0)
        predicted = torch.stack([angles_from_logits(out["pose_reference"][k]) for k in ANGLE_NAMES], -1)
        return {"l1": (fake - drivings).abs().mean(), "psnr": psnr(fake, drivings).mean(),
                "copy_l1": (copy - drivings).abs().mean(), "copy_psnr": psnr(copy, drivings).mean(),
                "pose_error_deg": torch.rad2deg((predicted - angles).abs()).mean()}

    @torch.no_grad()
    def visualize(self, batch, ctx: StepContext):
        sources, drivings, out, _ = self._forward(batch, ctx)
        columns = [sources.repeat_interleave(self.pairs, 0), drivings, out["image"].float().clamp(0, 1)]
        return {"source|driving|isp": torch.cat(columns, dim=-1)[:8]}
