"""Style-A losses. Images are [B, 3, H, W] in [-1, 1]; every loss returns a scalar tensor.

* :class:`StyleALoss` — the generator's objective: named terms from ``stage.loss`` weights and
  their weighted total (the stage runs the discriminator step and hands in the adversarial term).
* :func:`reconstruction_loss` — MSE (the paper's L2).
* :class:`VGGPerceptual` — L1 between VGG-19 features (relu1_1 ... relu5_1, pix2pixHD weights
  1/32 ... 1) of ImageNet-normalised images; the paper weights it 0.1. It takes the feature
  network (:func:`stylization.loading.vgg19_features` fetches torchvision's ImageNet weights).
* :class:`LPIPSLoss` — the optional LPIPS-VGG of the official code, around a given LPIPS network
  (:func:`stylization.loading.lpips_vgg`).
* :func:`d_logistic_loss`, :func:`g_nonsaturating_loss`, :func:`r1_penalty` — StyleGAN2's.
* :func:`mask_hinge_loss` — VToonify's fusion-mask hinge: relu(mean(m) - ((1 - d)^2 · 0.9 + 0.1)).
* :func:`temporal_loss` — consecutive frames: MSE between the change of the outputs and the
  change of the targets (the official code declared a temporal loss and never wrote it).
* :func:`motion_residual_loss` — the part of the error that changes with the coefficient window:
  the spread of (output - target) over the frames rendered from one source. The blur and colour
  errors every frame of a source shares cancel in it, which leaves the mouth and pose.
* :func:`warping_loss` — PIRenderer's motion-generator loss: L1 between the source image warped
  by the flow and the target image.
* :func:`mouth_loss` — MSE inside each target's mouth box (landmarks 48-67, enlarged): the mouth
  is a few percent of the frame, so the plain MSE barely asks for it.
* :func:`mouth_motion_loss` — the motion residual inside the mouth: how the mouth box changes over
  the frames rendered from one source, model against target (the quantity ``eval_render``'s
  ``mouth_motion_corr`` / ``mouth_motion_gain`` score), as an MSE.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from stylization.constants import IMAGENET_MEAN, IMAGENET_STD
from stylization.errors import ConfigError
from stylization.metrics.mouth import mouth_boxes, mouth_changes
from stylization.style_a.motion import warp

VGG19_LAYERS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}  # indices in features
DEFAULT_LAYER_WEIGHTS = {"relu1_1": 1 / 32, "relu2_1": 1 / 16, "relu3_1": 1 / 8, "relu4_1": 1 / 4, "relu5_1": 1.0}


def perceptual_pyramid(perceptual: nn.Module, fake: torch.Tensor, real: torch.Tensor, scales: int) -> torch.Tensor:
    """``perceptual`` (a :class:`VGGPerceptual`) summed over ``scales`` sizes, each half the last (bilinear,
    as PIRender's ``num_scales``); fake, real [N, 3, H, W] in [-1, 1]."""
    perceptual.to(fake.device)
    total = perceptual(fake, real)
    for _ in range(1, scales):
        size = (fake.shape[-2] // 2, fake.shape[-1] // 2)
        fake, real = (F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in (fake, real))
        total = total + perceptual(fake, real)
    return total


def reconstruction_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(fake, real)


VGG_MIN_SIZE = 16  # px: VGG-19 pools 4 times before relu5_1


def check_perceptual_options(stage, image_size: int, perceptual_weight: float, zero_hint: str) -> None:
    """Raise a ConfigError naming the key when ``stage.perceptual_layers`` names an unknown VGG-19 layer,
    ``stage.perceptual_scales`` < 1, or (with ``perceptual_weight`` > 0) the scales halve the image below
    :data:`VGG_MIN_SIZE`. ``zero_hint``: how to turn the perceptual terms off, for the message."""
    from stylization.errors import ConfigError

    unknown = set(stage.perceptual_layers) - set(VGG19_LAYERS)
    if unknown:
        raise ConfigError(f"stage.perceptual_layers: unknown layers {sorted(unknown)}; known: {list(VGG19_LAYERS)}")
    scales = int(stage.perceptual_scales)
    if scales < 1:
        raise ConfigError(f"stage.perceptual_scales must be >= 1, got {scales}")
    if perceptual_weight > 0 and image_size >> (scales - 1) < VGG_MIN_SIZE:
        most = (image_size // VGG_MIN_SIZE).bit_length()
        fix = f"use at most {most}" if most else zero_hint
        raise ConfigError(f"stage.perceptual_scales={scales} takes model.image_size={image_size} below VGG-19's "
                          f"{VGG_MIN_SIZE} px; {fix}")


class VGGPerceptual(nn.Module):
    """Frozen VGG-19 feature distance.

    ``features`` is torchvision's ``vgg19().features`` (ImageNet weights from
    :func:`stylization.loading.vgg19_features`; a random one only in tests); the layers past the
    deepest one weighted are dropped. ``max_size`` average-pools larger inputs first.
    """

    def __init__(self, features: nn.Module, layer_weights: Mapping[str, float] | None = None, max_size: int = 512):
        super().__init__()
        self.layer_weights = dict(layer_weights or DEFAULT_LAYER_WEIGHTS)
        unknown = set(self.layer_weights) - set(VGG19_LAYERS)
        if unknown:
            raise ConfigError(f"unknown VGG-19 layers {sorted(unknown)}; known: {sorted(VGG19_LAYERS)}")
        last = max(VGG19_LAYERS[k] for k in self.layer_weights)
        self.features = features[: last + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.max_size = max_size

    def train(self, mode: bool = True):
        return super().train(False)  # always in eval mode

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[-1] > self.max_size:
            x = F.adaptive_avg_pool2d(x, self.max_size)
        x = ((x + 1) / 2 - self.mean) / self.std
        wanted = {VGG19_LAYERS[k]: k for k in self.layer_weights}
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        f, r = self._features(fake), self._features(real.detach())
        return sum(w * F.l1_loss(f[k], r[k]) for k, w in self.layer_weights.items())


class LPIPSLoss(nn.Module):
    """LPIPS (``net``: an ``lpips.LPIPS`` network, VGG backbone), averaged over the batch; frozen."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, fake, real):
        return self.net(fake, real.detach()).mean()


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_pred).mean()


def r1_penalty(real_pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of |d D(x) / dx|^2 (``real`` must require grad)."""
    (grad,) = torch.autograd.grad(real_pred.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def mask_hinge_loss(masks: list[torch.Tensor], degree: float) -> torch.Tensor:
    """Keeps the fusion masks from letting more content through than the degree allows."""
    bound = (1 - float(degree)) ** 2 * 0.9 + 0.1
    if not masks:
        return torch.zeros(())
    return sum(F.relu(m.mean() - bound) for m in masks)


def temporal_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """fake, real [B, T >= 2, 3, H, W]: MSE between consecutive differences."""
    if fake.shape[1] < 2:
        raise ValueError("the temporal loss needs at least two consecutive frames per item")
    return F.mse_loss(fake[:, 1:] - fake[:, :-1], real[:, 1:] - real[:, :-1])


def motion_residual_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """fake, real [B, N >= 2, 3, H, W] (N frames rendered from one source) -> mean squared deviation of
    the residual from its mean over the N frames (half the mean pairwise MSE of residual differences)."""
    if fake.shape[1] < 2:
        raise ValueError("the motion residual loss needs at least two frames per source")
    residual = fake - real
    return (residual - residual.mean(1, keepdim=True)).pow(2).mean()


def warping_loss(source: torch.Tensor, flow: torch.Tensor, target: torch.Tensor, align_corners: bool = False):
    """source, target [B, 3, H, W]; flow [B, 2, h, w] (pixels of its grid) -> L1 of warp(source) vs target."""
    return F.l1_loss(warp(source, flow, align_corners), target)


def mouth_loss(fake: torch.Tensor, real: torch.Tensor, landmarks: torch.Tensor, scale: float = 1.5) -> torch.Tensor:
    """fake, real [N, 3, S, S]; landmarks [N, 68, 2] in pixels of S -> mean over frames of the box MSE."""
    boxes = mouth_boxes(landmarks, fake.shape[-1], scale).tolist()
    return torch.stack([F.mse_loss(fake[i, :, y0:y1, x0:x1], real[i, :, y0:y1, x0:x1])
                        for i, (x0, y0, x1, y1) in enumerate(boxes)]).mean()


def mouth_motion_loss(fake: torch.Tensor, real: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """fake, real [B, N >= 2, 3, S, S] (N frames rendered from one source); landmarks [B, N, 68, 2] in
    pixels of S -> the MSE between the model's and the target's mouth change over the N frames (one
    box per source, :func:`stylization.metrics.mouth.mouth_changes`), averaged over the B sources.

    Equal to :func:`motion_residual_loss` restricted to the mouth box: the full-frame term spreads its
    weight over the head, where pose dominates; this one asks for the lips alone."""
    if fake.shape[1] < 2:
        raise ValueError("the mouth motion loss needs at least two frames per source")
    b, n = fake.shape[:2]
    boxes = mouth_boxes(landmarks.flatten(0, 1), fake.shape[-1]).tolist()
    flat_fake, flat_real = fake.flatten(0, 1), real.flatten(0, 1)
    errors = []
    for i in range(b):
        model_change, target_change = mouth_changes(flat_fake, flat_real, boxes, range(i * n, i * n + n))
        errors.append((model_change - target_change).pow(2).mean())
    return torch.stack(errors).mean()


# The weights of stage.loss and the term each scales ("adversarial" scales the generator's term).
TERM_OF_WEIGHT = {"adversarial": "g_adv", "mse": "mse", "perceptual": "perceptual", "lpips": "lpips", "mask": "mask",
                  "temporal": "temporal", "warp": "warp", "mouth": "mouth", "motion": "motion",
                  "mouth_motion": "mouth_motion", "sync": "sync"}


def check_weights(weights: Mapping[str, float]) -> None:
    """Raise a :class:`ConfigError` unless ``weights`` (``stage.loss``) names exactly the known weights."""
    unknown, missing = sorted(set(weights) - set(TERM_OF_WEIGHT)), sorted(set(TERM_OF_WEIGHT) - set(weights))
    if unknown or missing:
        raise ConfigError(f"stage.loss: unknown weights {unknown}, missing {missing}; the weights are "
                          f"{list(TERM_OF_WEIGHT)}")


class StyleALoss(nn.Module):
    """The Style-A generator's objective: named terms and their weighted total.

    Args (keyword-only):
        weights: ``stage.loss``, exactly the keys of :data:`TERM_OF_WEIGHT`. A term whose weight
            is 0 is not computed, except MSE and the mask hinge, which are always logged.
        degree: the style degree d_s (the mask hinge's bound).
        align_corners: the generator's warp convention (the warping loss warps the same way).
        perceptual: a :class:`VGGPerceptual`, needed when ``weights["perceptual"] > 0``.
        lpips: an :class:`LPIPSLoss`, needed when ``weights["lpips"] > 0``.
        sync_expert: a :class:`~stylization.syncnet.expert.SyncExpertLoss` (a frozen SyncNet), needed
            when ``weights["sync"] > 0``: Wav2Lip's lip-sync expert on each run of 5 frames.
    """

    def __init__(self, *, weights: Mapping[str, float], degree: float, align_corners: bool,
                 perceptual: nn.Module | None = None, lpips: nn.Module | None = None,
                 sync_expert: nn.Module | None = None):
        super().__init__()
        check_weights(weights)
        self.weights = {k: float(v) for k, v in weights.items()}
        for name, module in (("perceptual", perceptual), ("lpips", lpips), ("sync", sync_expert)):
            if self.weights[name] > 0 and module is None:
                raise ValueError(f"stage.loss.{name} > 0 needs its loss module")
        self.perceptual = perceptual if self.weights["perceptual"] > 0 else None
        self.lpips = lpips if self.weights["lpips"] > 0 else None
        self.sync_expert = sync_expert if self.weights["sync"] > 0 else None
        self.degree, self.align_corners = float(degree), bool(align_corners)

    def forward(self, out: dict, target: torch.Tensor, batch: dict, g_adv: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Generator outputs and targets -> (weighted total, {term name: unweighted value}).

        Args:
            out: the generator's outputs for N = B·K·F frames: ``image`` float [N, 3, O, O],
                ``flow`` [N, 2, h, w] (pixels), ``masks`` (fusion masks).
            target: [B, K, F, 3, O, O], the ground truth of K runs of F consecutive frames per item.
            batch: the dataset's ``source`` [B, 3, C, C], ``target_real`` [B, K, F, 3, C, C] (the
                warping loss) and ``target_landmarks`` [B, K, F, 68, 2] (px of O; the mouth loss).
            g_adv: the generator's adversarial term when a discriminator trains.

        With the lip-sync expert, F is the expert's window (5 frames) and the batch also holds
        ``sync_audio`` [B, K, 2M+1, 1, 13, 20] (MFCC windows at offsets -M..M around each run) and
        ``sync_target`` [B, K] (the in-sync offset's index).
        """
        w = self.weights
        b, k, f = target.shape[:3]
        fake, real = out["image"], target.flatten(0, 2)
        self.to(fake.device)
        terms = {} if g_adv is None else {"g_adv": g_adv}
        terms["mse"] = reconstruction_loss(fake, real)
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(fake, real)
        if self.lpips is not None:
            terms["lpips"] = self.lpips(fake, real)
        terms["mask"] = mask_hinge_loss([m.float() for m in out["masks"]], self.degree)
        if w["warp"] > 0:
            source = batch["source"].repeat_interleave(k * f, 0)
            terms["warp"] = warping_loss(source, out["flow"].float(), batch["target_real"].flatten(0, 2),
                                         self.align_corners)
        if w["mouth"] > 0:
            terms["mouth"] = mouth_loss(fake, real, batch["target_landmarks"].flatten(0, 2))
        if k * f > 1 and w["motion"] > 0:
            terms["motion"] = motion_residual_loss(fake.reshape(b, k * f, *fake.shape[1:]),
                                                   real.reshape(b, k * f, *real.shape[1:]))
        if k * f > 1 and w["mouth_motion"] > 0:
            terms["mouth_motion"] = mouth_motion_loss(fake.reshape(b, k * f, *fake.shape[1:]),
                                                      real.reshape(b, k * f, *real.shape[1:]),
                                                      batch["target_landmarks"].flatten(1, 2))
        if self.sync_expert is not None:
            terms["sync"] = self.sync_expert(fake.reshape(b * k, f, *fake.shape[1:]), batch["sync_audio"].flatten(0, 1),
                                             batch["sync_target"].flatten())
        if f > 1 and w["temporal"] > 0:
            terms["temporal"] = temporal_loss(fake.reshape(b * k, f, *fake.shape[1:]), target.flatten(0, 1))
        weight_of = {term: w[name] for name, term in TERM_OF_WEIGHT.items()}
        total = sum(weight_of[name] * value for name, value in terms.items())  # this order: the same float sums
        return total, terms
