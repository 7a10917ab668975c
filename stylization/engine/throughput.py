"""Training throughput of a stage, measured through the engine (``scripts/bench_training.py``).

Two figures per stage:

* **steps**: the :class:`~stylization.engine.trainer.Trainer` that ``train.py`` builds, running its own
  :meth:`~stylization.engine.trainer.Trainer.fit` loop for a number of optimisation steps (waiting for
  batches included, as in training);
* **the loader's ceiling**: the same trainer's data stream (its DataLoader: dataset, batch size,
  workers, collate) drained with no model work, batches moved to the device as the loop moves them.

Only the steps are timed: :class:`ThroughputTrainer` saves no checkpoint and runs no validation, and
the script turns image grids off (``trainer.image_every_steps=0``), so periodic work does not land in
a short measurement.
"""

from __future__ import annotations

import time

import torch
from omegaconf import DictConfig

from stylization.engine.distributed import init_distributed
from stylization.engine.run import build_stage
from stylization.engine.trainer import DataStream, Trainer, to_device


class ThroughputTrainer(Trainer):
    """A :class:`Trainer` whose :meth:`fit` only steps: checkpoints and validation are skipped."""

    def save_checkpoint(self) -> str:
        return ""

    def validate(self) -> dict[str, float]:
        return {}


def build_trainer(cfg: DictConfig) -> ThroughputTrainer:
    """The stage and trainer of ``cfg`` as ``train.py`` builds them (``stylization.engine.run``), in one
    process; ``cfg.trainer.run_dir`` receives only TensorBoard scalars."""
    env = init_distributed(str(cfg.trainer.device))
    return ThroughputTrainer(cfg, build_stage(cfg), env)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainer: Trainer, steps: int) -> float:
    """Wall seconds of ``steps`` more optimisation steps of ``trainer.fit()`` (the device synchronised at
    both ends)."""
    trainer.tcfg.max_steps = trainer.step + int(steps)
    _synchronize(trainer.env.device)
    began = time.perf_counter()
    trainer.fit()
    _synchronize(trainer.env.device)
    return time.perf_counter() - began


def prefetched_batches(stream: DataStream) -> int:
    """Batches a DataLoader's workers may hold ready (2 per worker, PyTorch's default prefetch_factor):
    batches made while the model was busy that a loader measurement must drain before it counts."""
    return 2 * stream.num_workers


def time_batches(stream: DataStream, batches: int, device: torch.device) -> float:
    """Wall seconds to draw ``batches`` batches from ``stream`` and move them to ``device``, nothing else."""
    _synchronize(device)
    began = time.perf_counter()
    for _ in range(int(batches)):
        to_device(stream.next(), device)
    _synchronize(device)
    return time.perf_counter() - began


def measure(trainer: Trainer, steps: int, warmup: int) -> dict:
    """Steps/s and samples/s of ``trainer``, then its loader's ceiling in samples/s.

    ``warmup`` steps (data workers starting, allocator, first-call costs) come first and are not
    counted; before the loader is timed, ``warmup`` batches plus what the workers prefetched while the
    model ran are drawn and not counted. A sample is one item of the stage's dataset
    (``stage.batch_size`` per step).
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    batch = trainer.stage.batch_size
    if warmup:
        time_steps(trainer, warmup)
    seconds = time_steps(trainer, steps)
    device = trainer.env.device
    time_batches(trainer.data, warmup + prefetched_batches(trainer.data), device)
    loader_seconds = time_batches(trainer.data, steps, device)
    return {"batch_size": batch, "steps": steps, "step_seconds": seconds / steps, "steps_per_s": steps / seconds,
            "samples_per_s": batch * steps / seconds, "loader_samples_per_s": batch * steps / loader_seconds,
            "device": str(device), "precision": "bf16" if trainer.use_bf16 else "fp32",
            "workers": trainer.data.num_workers, "threads": torch.get_num_threads()}


def bound(samples_per_s: float, loader_samples_per_s: float, margin: float = 1.5) -> str:
    """"data" when the loader alone is less than ``margin`` x faster than training (decoding, not the
    model, is then what limits the steps or soon will), else "compute"."""
    return "data" if loader_samples_per_s < margin * samples_per_s else "compute"
