"""Diffusion over expression windows: the cosine schedule and two samplers.

The network predicts x0 (the clean window), not the noise (Style²Talker, after DALL·E 2's
prior). Nothing here knows the network: samplers call ``denoise(x_t, t) -> x0_hat`` with
``t`` a [B] tensor of timesteps of the full T-step chain. Coefficients are never clamped
(they are not pixels).

* :class:`CosineSchedule` — Nichol & Dhariwal's schedule, tables built in float64.
* :func:`respaced_timesteps` — the sub-chain used at inference (5 steps: 0, 200, ..., 800).
* :class:`RespacedSampler` — the reverse loop; its subclasses define one update ``step()``:
  :class:`DDIMSampler` — deterministic for ``eta = 0`` (the paper's sampler; default);
  :class:`AncestralSampler` — DDPM posterior sampling on the respaced chain (what the
  official code actually ran).
"""

from __future__ import annotations

import abc
import math
from typing import Callable

import numpy as np
import torch

from stylization.errors import ConfigError

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Noise drawn on the generator's device (CPU by default), then moved: same seed, same noise anywhere."""
    gen_device = generator.device if generator is not None else "cpu"
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


class CosineSchedule:
    """alpha_bar(t) = f(t) / f(0), f(t) = cos²(((t / T) + s) / (1 + s) · π / 2), betas capped at 0.999.

    ``alphas_cumprod[t]`` is the signal fraction after t + 1 noising steps (t = 0 .. T-1),
    as in guided-diffusion's indexing.
    """

    def __init__(self, num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999):
        if num_timesteps < 1:
            raise ValueError("num_timesteps must be positive")
        f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        betas = np.array([min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), max_beta)
                          for i in range(num_timesteps)], dtype=np.float64)
        assert (betas > 0).all() and (betas <= max_beta).all()
        self.num_timesteps = num_timesteps
        self.betas = betas
        self.alphas_cumprod = np.cumprod(1.0 - betas)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alphas_cumprod at integer timesteps ``t`` (any shape), as float32 on t's device."""
        table = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64)
        return table[t.long().cpu()].to(device=t.device, dtype=torch.float32)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε for [B, ...] x0 and [B] t."""
        a = self.alpha_bar(t).reshape(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


def respaced_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """Evenly spaced timesteps, ascending, starting at 0: (1000, 5) -> [0, 200, 400, 600, 800]."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"cannot respace {num_timesteps} timesteps into {steps} steps")
    stride = num_timesteps // steps
    return [i * stride for i in range(steps)]


class RespacedSampler(abc.ABC):
    """The reverse loop over a respaced chain; subclasses define one update, :meth:`step`."""

    def __init__(self, schedule: CosineSchedule, steps: int = 5):
        self.schedule = schedule
        self.timesteps = respaced_timesteps(schedule.num_timesteps, steps)

    @abc.abstractmethod
    def step(self, x_t: torch.Tensor, x0: torch.Tensor, t: int, t_prev: int,
             generator: torch.Generator | None) -> torch.Tensor:
        """x_t at timestep t and the predicted x0 -> x at the earlier timestep t_prev."""

    @torch.no_grad()
    def sample(self, denoise: Denoiser, shape, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", x_T: torch.Tensor | None = None) -> torch.Tensor:
        """Run the chain from x_T (drawn from ``generator`` when not given); returns the final x0."""
        x = _randn(shape, generator, device) if x_T is None else x_T
        ts = self.timesteps[::-1]
        for i, t in enumerate(ts):
            x0 = denoise(x, torch.full((shape[0],), t, device=x.device, dtype=torch.long))
            if i == len(ts) - 1:
                return x0
            x = self.step(x, x0, t, ts[i + 1], generator)
        return x


class DDIMSampler(RespacedSampler):
    """DDIM (Song et al. 2021, eq. 12); ``eta`` = 0 is deterministic, 1 matches DDPM's variance."""

    def __init__(self, schedule: CosineSchedule, steps: int = 5, eta: float = 0.0):
        super().__init__(schedule, steps)
        self.eta = float(eta)

    def step(self, x_t, x0, t, t_prev, generator):
        a_t, a_prev = float(self.schedule.alphas_cumprod[t]), float(self.schedule.alphas_cumprod[t_prev])
        eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)  # the noise implied by x0_hat
        sigma = self.eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        return x + sigma * _randn(x.shape, generator, x.device) if sigma > 0 else x


class AncestralSampler(RespacedSampler):
    """Posterior sampling q(x_s | x_t, x0_hat) along the respaced chain (no noise at the end)."""

    def step(self, x_t, x0, t, t_prev, generator):
        a_t, a_prev = float(self.schedule.alphas_cumprod[t]), float(self.schedule.alphas_cumprod[t_prev])
        beta = 1 - a_t / a_prev  # the respaced chain's own step
        mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t)) * x_t
        var = beta * (1 - a_prev) / (1 - a_t)
        return mean + math.sqrt(var) * _randn(x_t.shape, generator, x_t.device)


SAMPLERS = ("ddim", "ancestral")


def build_sampler(kind: str, schedule: CosineSchedule, steps: int, eta: float = 0.0) -> RespacedSampler:
    """One of :data:`SAMPLERS` over ``schedule`` respaced to ``steps`` (``eta`` is DDIM's only)."""
    if kind == "ddim":
        return DDIMSampler(schedule, steps, eta)
    if kind == "ancestral":
        return AncestralSampler(schedule, steps)
    raise ValueError(f"sampler must be 'ddim' or 'ancestral', got {kind!r}")


def diffusion_sampler(*, timesteps: int, sampler: str, steps: int, eta: float) -> RespacedSampler:
    """The configured reverse diffusion (``model.diffusion``: a T-step cosine schedule respaced to
    ``steps``), checked first so that a bad value fails at start-up naming its key."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"model.diffusion.sampler={sampler!r} is unknown; use one of {', '.join(SAMPLERS)}")
    if not 1 <= steps <= timesteps:
        raise ConfigError(f"model.diffusion.steps={steps} cannot respace model.diffusion.timesteps={timesteps}; "
                          "use 1 <= steps <= timesteps")
    return build_sampler(sampler, CosineSchedule(timesteps), steps, eta)
