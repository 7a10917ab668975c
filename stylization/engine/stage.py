"""The contract between a training stage and the :class:`~stylization.engine.trainer.Trainer`.

A stage says what to build (modules, optimisers, schedulers, datasets) and what one
step does; the trainer owns everything else (loop, devices, DDP, precision, clipping,
EMA, validation, logging, checkpoints, resuming).
"""

from __future__ import annotations

import abc
import contextlib
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

from stylization.errors import ConfigError

if TYPE_CHECKING:
    from stylization.engine.trainer import Trainer


def loss_weights(loss: DictConfig, terms: tuple[str, ...]) -> dict[str, float]:
    """``stage.loss`` -> {term: weight}: exactly the keys ``terms``, each >= 0 (a :class:`ConfigError`
    naming ``stage.loss`` otherwise). A weight of 0 turns its term off."""
    if set(loss) != set(terms):
        raise ConfigError(f"stage.loss must have exactly the weights {list(terms)}, got {sorted(loss)}")
    weights = {k: float(loss[k]) for k in terms}
    if any(w < 0 for w in weights.values()):
        raise ConfigError(f"stage.loss weights must be >= 0, got {weights}")
    return weights


def check_adam_options(stage: DictConfig, counts: tuple[str, ...]) -> None:
    """Raise a ConfigError naming the key unless every ``stage.<count>`` is >= 1, ``stage.lr`` > 0 and
    ``stage.betas`` two values in [0, 1) (the checks every Adam-trained image stage starts with)."""
    for key in counts:
        if int(stage[key]) < 1:
            raise ConfigError(f"stage.{key} must be >= 1, got {stage[key]}")
    if float(stage.lr) <= 0:
        raise ConfigError(f"stage.lr must be > 0, got {stage.lr}")
    if len(stage.betas) != 2 or not all(0 <= float(b) < 1 for b in stage.betas):
        raise ConfigError(f"stage.betas must be two values in [0, 1), got {list(stage.betas)}")


class StepContext:
    """What a stage's step functions see.

    Attributes:
        modules: the stage's modules, DDP-wrapped when training on several processes.
        eval_modules: for validation: the EMA copy of a module where there is one, else the
            unwrapped module.
        device: where batches and modules live.
        step: optimisation steps completed before this one.
        generator: a seeded ``torch.Generator`` on ``device`` for the stage's own randomness
            (noise, dropout of conditions); saved and restored with checkpoints.
    """

    def __init__(self, trainer: "Trainer"):
        self._trainer = trainer
        self.modules: dict[str, nn.Module] = trainer.modules
        self.device: torch.device = trainer.env.device
        self.generator: torch.Generator = trainer.generator
        self.step = 0

    @property
    def eval_modules(self) -> dict[str, nn.Module]:
        t = self._trainer
        return {name: t.ema[name].shadow if name in t.ema else module for name, module in t.raw_modules.items()}

    def autocast(self):
        """Mixed precision for forward passes: bf16 on CUDA unless ``trainer.precision=fp32``."""
        if self._trainer.use_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def optimize(self, optimizer: str, loss: torch.Tensor) -> float:
        """Zero the optimiser's gradients, backpropagate ``loss``, clip, step. Returns the grad norm."""
        return self._trainer.optimize(optimizer, loss)

    def budget_spent(self) -> float:
        """The share of ``trainer.max_minutes`` spent so far (0 without a time budget), the same on
        every rank (rank 0's clock). For stages whose phases split a time budget; a stage that uses it
        records its phase switch in :meth:`TrainingStage.state_dict` so that resuming repeats it."""
        return self._trainer.budget_spent()


class FirstPhase:
    """A stage's first phase (e.g. a codebook trained before the model that reads it): it lasts
    ``steps`` steps or, with ``trainer.max_minutes``, until ``share`` of the budget is spent, whichever
    comes first. The step it ended at (``until``) belongs in the stage's :meth:`TrainingStage.state_dict`,
    so that a resumed run stays in the phase it was in."""

    def __init__(self, steps: int, share: float, what: str):
        if int(steps) < 0 or not 0 <= float(share) <= 1:
            raise ConfigError(f"stage.{what}_steps must be >= 0 and stage.{what}_share in [0, 1]")
        self.steps, self.share = int(steps), float(share)
        self.until: int | None = None

    def active(self, ctx: StepContext) -> bool:
        """Whether step ``ctx.step`` is still in the phase (the first step that is not ends it)."""
        if self.until is None:
            if ctx.step < self.steps and ctx.budget_spent() < self.share:
                return True
            self.until = ctx.step
        return False


class TrainingStage(abc.ABC):
    """Base of every ``python train.py stage=<name>`` stage.

    ``cfg`` is the whole resolved config (``cfg.stage``, ``cfg.model``, ``cfg.data``, ...).
    Subclasses define the abstract methods; the others have working defaults.
    """

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    @property
    def name(self) -> str:
        return str(self.cfg.stage.name)

    @property
    def batch_size(self) -> int:
        """Windows per process per step."""
        return int(self.cfg.stage.batch_size)

    #: DistributedDataParallel's ``find_unused_parameters`` for this stage's modules: True where some
    #: trainable parameters sit out some steps (a per-step draw, a phase), at the cost of a graph walk.
    find_unused_parameters: bool = False

    @property
    def ema_modules(self) -> tuple[str, ...]:
        """Names of the modules the trainer keeps an EMA of (``stage.ema_modules``; used when
        ``trainer.ema_decay`` is set)."""
        return tuple(self.cfg.stage.ema_modules)

    @abc.abstractmethod
    def build_modules(self) -> dict[str, nn.Module]:
        """Every module the stage trains or uses, by name (the checkpoint's keys)."""

    @abc.abstractmethod
    def build_optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name, over the unwrapped ``modules``."""

    def build_schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, object]:
        """LR schedulers by name, stepped once per training step; no scheduler by default."""
        return {}

    def split_dataset(self, split: str) -> Dataset:
        """The dataset of one corpus split. A stage that builds its training and validation sets the
        same way defines this and inherits :meth:`train_dataset` / :meth:`val_dataset`; the others
        override those two."""
        raise TypeError(f"stage {self.name!r} defines neither train_dataset nor split_dataset")

    def train_dataset(self) -> Dataset:
        """The training set (``data.train_split``); items are dicts collated by the default collate function."""
        return self.split_dataset(str(self.cfg.data.train_split))

    def val_dataset(self) -> Dataset | None:
        """The validation set (``data.val_split``), or None to skip validation."""
        split = self.cfg.data.val_split
        return None if split is None else self.split_dataset(str(split))

    @abc.abstractmethod
    def training_step(self, batch: dict, ctx: StepContext) -> dict[str, torch.Tensor | float]:
        """One optimisation step (forward, ``ctx.optimize``); returns scalars to log."""

    def validation_step(self, batch: dict, ctx: StepContext) -> dict[str, torch.Tensor | float]:
        """Scalars for one validation batch (averaged by the trainer); required with a val set.

        Use ``ctx.eval_modules`` (EMA where kept, never DDP-wrapped) here and in :meth:`visualize`.
        """
        raise TypeError(f"stage {self.name!r} has a validation set but no validation_step")

    def visualize(self, batch: dict, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Images [N, 3, H, W] in [0, 1] to log as grids; none by default."""
        return {}

    def state_dict(self) -> dict:
        """The stage's own progress (plain Python values) saved with each checkpoint; none by default."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict` on resuming (``{}`` from checkpoints that have none)."""
