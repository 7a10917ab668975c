"""Style-A losses. Images are [B, 3, H, W] in [-1, 1]; every loss returns a scalar tensor.

* :func:`reconstruction_loss` — MSE (the paper's L2).
* :class:`VGGPerceptual` — L1 between VGG-19 features (relu1_1 ... relu5_1, pix2pixHD weights
  1/32 ... 1) of ImageNet-normalised images; the paper weights it 0.1.
* :class:`LPIPSLoss` — the optional LPIPS-VGG of the official code (needs ``pip install lpips``).
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
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from stylization.errors import CheckpointError, ConfigError
from stylization.style_a.motion import warp

VGG19_LAYERS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}  # indices in features
DEFAULT_LAYER_WEIGHTS = {"relu1_1": 1 / 32, "relu2_1": 1 / 16, "relu3_1": 1 / 8, "relu4_1": 1 / 4, "relu5_1": 1.0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def reconstruction_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(fake, real)


class VGGPerceptual(nn.Module):
    """Frozen VGG-19 feature distance.

    ``weights="imagenet"`` loads torchvision's ``VGG19_Weights.IMAGENET1K_V1`` (from the torch
    hub cache; it is downloaded there when missing and the network allows); ``None`` keeps a
    random initialisation (tests only). ``max_size`` average-pools larger inputs first.
    """

    def __init__(self, weights: str | None = "imagenet", layer_weights: dict[str, float] | None = None,
                 max_size: int = 512):
        super().__init__()
        from torchvision.models import VGG19_Weights, vgg19

        self.layer_weights = dict(layer_weights or DEFAULT_LAYER_WEIGHTS)
        unknown = set(self.layer_weights) - set(VGG19_LAYERS)
        if unknown:
            raise ConfigError(f"unknown VGG-19 layers {sorted(unknown)}; known: {sorted(VGG19_LAYERS)}")
        if weights == "imagenet":
            try:
                net = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
            except Exception as exc:  # offline and not cached
                cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(VGG19_Weights.IMAGENET1K_V1.url))
                raise CheckpointError(f"VGG-19 ImageNet weights unavailable ({type(exc).__name__}); download "
                                      f"{VGG19_Weights.IMAGENET1K_V1.url} to that path, or set the perceptual "
                                      "weight to 0", cache) from None
        elif weights is None:
            net = vgg19(weights=None)
        else:
            raise ConfigError(f"VGG weights must be 'imagenet' or null, got {weights!r}")
        last = max(VGG19_LAYERS[k] for k in self.layer_weights)
        self.features = net.features[: last + 1].eval().requires_grad_(False)
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
    """LPIPS with the VGG backbone (the ``lpips`` package), averaged over the batch."""

    def __init__(self):
        super().__init__()
        try:
            import lpips
        except ImportError:
            raise ConfigError("LPIPS needs the lpips package (pip install lpips), or set the LPIPS weight to 0") from None
        self.net = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)

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


def mouth_boxes(landmarks: torch.Tensor, size: int, scale: float = 1.5) -> torch.Tensor:
    """[N, 68, 2] pixels -> [N, 4] integer boxes (x0, y0, x1, y1) around landmarks 48-67, ``scale`` times
    their extent, clipped to the ``size`` frame."""
    mouth = landmarks[:, 48:68].float()
    lo, hi = mouth.amin(1), mouth.amax(1)
    centre, half = (lo + hi) / 2, (hi - lo).amax(1, keepdim=True) * scale / 2 + 1
    x0y0 = (centre - half).floor().clamp(0, size - 1)
    x1y1 = (centre + half).ceil().clamp(1, size)
    return torch.cat([x0y0, x1y1], 1).long()


def mouth_loss(fake: torch.Tensor, real: torch.Tensor, landmarks: torch.Tensor, scale: float = 1.5) -> torch.Tensor:
    """fake, real [N, 3, S, S]; landmarks [N, 68, 2] in pixels of S -> mean over frames of the box MSE."""
    boxes = mouth_boxes(landmarks, fake.shape[-1], scale).tolist()
    return torch.stack([F.mse_loss(fake[i, :, y0:y1, x0:x1], real[i, :, y0:y1, x0:x1])
                        for i, (x0, y0, x1, y1) in enumerate(boxes)]).mean()
