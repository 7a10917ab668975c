"""Style transfer (§4): fine-tune the motion generator towards a character's motion style.

Inputs: a character's reference landmarks φ_s (motion vectors of its reference frames: 68 x 3
keypoints in the head's frame and the 6-d head pose, :mod:`stylization.data.keypoint_motion`) and an
audio stream. The motion generator's output on the audio, φ_mg, and φ_s pass through the **style transfer network** f (:class:`StyleTransferNetwork`:
three layers of 1024, 512 and 256 units; "the final layer produces the mean features") and

* L_sc = || mean f(φ_mg) - mean f(φ_s) ||²                          (Eq. 4)
* L_r  = ( || ∇_φ̂ f(φ̂) ||₂ - 1 )²,  φ̂ = γ φ_s + (1 - γ) φ_mg       (Eqs. 5, 6)
* L_transfer = L_mg + L_sc + L_r                                   (Eq. 7)

**Our reading where the paper is vague** (it says f "aims to learn the differences between motions of
the input reference images and audio-driven motions" and that L_r keeps f from breaking "the manifold
of valid styles"):

* f learns to *show* the difference: it maximises ||gap|| - λ L_r, gap = mean f(φ_mg) - mean f(φ_s)
  (a critic with WGAN-GP's gradient penalty, which is Eq. 5's form, and WGAN-GP's λ = 10,
  ``critic_penalty``); the motion generator minimises ``anchor`` · L_mg + ``sc`` · ||gap|| + ``r`` · L_r
  with f fixed. ||gap|| = sqrt(L_sc) has L_sc's minimiser and gradients that do not grow with the gap.
  A network that minimised L_sc too would map every motion to one point: nothing would transfer.
* f's output is a 256-d vector; Eq. 5's gradient is that of its projection on the current gap's
  direction d = gap / ||gap|| (detached): the scalar along which the two motion sets are told apart.
  γ is drawn uniformly in [0, 1] per pair (WGAN-GP's interpolates).
* f reads :meth:`MotionGenerator.style_vector`: the 68 x 3 head-frame landmarks over one common scale
  and the head pose (210 numbers a frame). The means are over frames, so φ_mg and φ_s need not pair up.
* L_mg, the motion generator's loss: when the references are a talking video with its sound
  (``paired``), the generator's own training loss on it; when they are frames and the audio stream is
  another recording, the squared distance to the *untransferred* generator's output on that audio
  (in the generator's units): it keeps the timing while L_sc moves the style.
* The head sway that a speaker's references show is mostly not in the speech; the critic is what adds
  it (docs/results.md: fine-tuning on L_mg alone leaves SLD where it was).

At inference, :func:`~stylization.style_reference.motion.blend` mixes the transferred and untransferred
motion with γ (``style_strength``; :class:`~stylization.style_reference.motion.StyleRefMotion` applies it).
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import torch
from torch import nn

from stylization.style_reference.motion import MOTION_DIM, MotionGenerator

log = logging.getLogger(__name__)


class StyleTransferNetwork(nn.Module):
    """f: motion vectors [..., 210] -> features [..., 256] (layers of 1024, 512, 256 units)."""

    def __init__(self, in_dim: int = MOTION_DIM, widths: tuple[int, ...] = (1024, 512, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers.append(nn.Linear(in_dim if i == 0 else widths[i - 1], w))
            if i < len(widths) - 1:
                layers.append(nn.LeakyReLU(0.2))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mean_gap(f: nn.Module, phi_mg: torch.Tensor, phi_s: torch.Tensor) -> torch.Tensor:
    """mean f(φ_mg) - mean f(φ_s) over the frames: [N, 210], [M, 210] -> [256]."""
    return f(phi_mg).mean(0) - f(phi_s).mean(0)


def constraint_loss(f: nn.Module, phi_mg: torch.Tensor, phi_s: torch.Tensor) -> torch.Tensor:
    """Eq. 4: || mean f(φ_mg) - mean f(φ_s) ||²."""
    return mean_gap(f, phi_mg, phi_s).pow(2).sum()


def gradient_regulariser(f: nn.Module, phi_mg: torch.Tensor, phi_s: torch.Tensor, direction: torch.Tensor,
                         gamma: torch.Tensor) -> torch.Tensor:
    """Eqs. 5-6: mean over pairs of (||∇ (d · f(φ̂))||₂ - 1)², φ̂ = γ φ_s + (1 - γ) φ_mg; φ_mg, φ_s [N, 210]
    (paired row by row), d [256] unit, γ [N, 1]."""
    hat = (gamma * phi_s + (1 - gamma) * phi_mg).detach().requires_grad_(True)
    score = (f(hat) * direction).sum()
    (grad,) = torch.autograd.grad(score, hat, create_graph=True)
    return (grad.norm(dim=-1) - 1).pow(2).mean()


@dataclasses.dataclass
class TransferOptions:
    """The fine-tuning recipe; defaults and meanings live in configs/transfer/default.yaml."""

    steps: int
    lr: float
    critic_lr: float
    critic_steps: int
    windows: int
    window_frames: int
    reference_frames: int
    anchor: float
    sc: float
    r: float
    critic_penalty: float
    seed: int


def _sample_windows(streams: list[tuple[torch.Tensor, ...]], n: int, frames: int,
                    g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """n windows of ``frames`` frames drawn from the streams (tuples of frame-aligned tensors [T, ...]):
    a tuple of stacked windows [n, frames, ...], one per tensor of the tuples."""
    out = []
    for _ in range(n):
        stream = streams[int(torch.randint(len(streams), (1,), generator=g))]
        length = stream[0].shape[0]
        w = min(frames, length)
        start = int(torch.randint(length - w + 1, (1,), generator=g))
        out.append([x[start:start + w] for x in stream])
    w = min(parts[0].shape[0] for parts in out)
    return tuple(torch.stack([parts[i][:w] for parts in out]) for i in range(len(out[0])))


def transfer(generator: MotionGenerator, reference_face: torch.Tensor, reference_pose: torch.Tensor,
             mels: list[torch.Tensor], options: TransferOptions, progress=None,
             paired: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> tuple[MotionGenerator, list[dict]]:
    """Fine-tune a copy of ``generator`` towards the style of the reference motion (face [M, 68, 3], pose
    [M, 6]) on the audio ``mels`` (mel-window streams [T, 1, 80, 16]). Returns (the transferred generator,
    per-step logs). The input generator is not changed. ``progress``: an optional callable(step).

    ``paired``: when the references are a talking video with its sound, its motion per stream (face
    [T, 68, 3], pose [T, 6], aligned with ``mels``): L_mg is then the motion generator's own training loss
    on it (squared error in the generator's units) instead of the distance to the untransferred motion."""
    g = torch.Generator().manual_seed(int(options.seed))
    torch.manual_seed(int(options.seed))
    base = copy.deepcopy(generator).eval().requires_grad_(False)
    student = copy.deepcopy(generator).train().requires_grad_(True)
    student.dropout.p, student.lstm.dropout = 0.0, 0.0  # a few steps on one character: no dropout noise in φ_mg
    f = StyleTransferNetwork()
    opt_g = torch.optim.Adam(student.parameters(), lr=options.lr)
    opt_f = torch.optim.Adam(f.parameters(), lr=options.critic_lr, betas=(0.5, 0.9))
    phi_s_all = student.style_vector(reference_face.float(), reference_pose.float())  # [M, 210]
    if paired is not None and len(paired) != len(mels):
        raise ValueError(f"paired has {len(paired)} streams, mels {len(mels)}")
    streams = [(m,) if paired is None else (m, *paired[i]) for i, m in enumerate(mels)]
    logs = []
    for step in range(int(options.steps)):
        window = _sample_windows(streams, options.windows, options.window_frames, g)
        mel = window[0]
        with torch.no_grad():
            target = base.normalise(*base(mel)) if paired is None else student.normalise(window[1], window[2])
        pick = torch.randint(phi_s_all.shape[0], (options.reference_frames,), generator=g)
        phi_s = phi_s_all[pick]
        for _ in range(int(options.critic_steps)):  # f shows the gap (maximises L_sc - L_r)
            with torch.no_grad():
                phi_mg = student.style_vector(*student(mel)).flatten(0, 1)
            loss_f = _critic_loss(f, phi_mg, phi_s, options, g)
            opt_f.zero_grad(set_to_none=True)
            loss_f.backward()
            opt_f.step()
        f.requires_grad_(False)
        face, pose = student(mel)
        phi_mg = student.style_vector(face, pose).flatten(0, 1)
        l_mg = (student.normalise(face, pose) - target).pow(2).mean()
        gap = mean_gap(f, phi_mg, phi_s)
        l_sc = gap.pow(2).sum()
        pairs = _pairs(phi_mg, phi_s, g)
        l_r = gradient_regulariser(f, *pairs, gap.detach() / gap.detach().norm().clamp_min(1e-8),
                                   torch.rand(pairs[0].shape[0], 1, generator=g))
        loss = options.anchor * l_mg + options.sc * gap.norm() + options.r * l_r
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        f.requires_grad_(True)
        logs.append({"step": step, "l_mg": l_mg.item(), "l_sc": l_sc.item(), "l_r": l_r.item(),
                     "critic": float(loss_f.detach())})
        if progress is not None:
            progress(step)
    return student.eval().requires_grad_(False), logs


def _pairs(phi_mg: torch.Tensor, phi_s: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(phi_mg.shape[0], phi_s.shape[0])
    a = phi_mg[torch.randperm(phi_mg.shape[0], generator=g)[:n]]
    b = phi_s[torch.randperm(phi_s.shape[0], generator=g)[:n]]
    return a, b


def _critic_loss(f: nn.Module, phi_mg: torch.Tensor, phi_s: torch.Tensor, options: TransferOptions,
                 g: torch.Generator) -> torch.Tensor:
    gap = mean_gap(f, phi_mg, phi_s)
    direction = gap.detach() / gap.detach().norm().clamp_min(1e-8)
    pairs = _pairs(phi_mg, phi_s, g)
    l_r = gradient_regulariser(f, *pairs, direction, torch.rand(pairs[0].shape[0], 1, generator=g))
    return -gap.norm() + options.critic_penalty * l_r
