"""The training loop shared by every stage.

One run directory holds everything a run writes::

    <run_dir>/config.yaml            the resolved config
    <run_dir>/train.log              the log (rank 0)
    <run_dir>/tb/                    TensorBoard scalars and image grids
    <run_dir>/checkpoints/step_*.pt  atomic checkpoints (see checkpoint.py)

Resuming (``trainer.resume=auto``) restores modules, EMA, optimisers, schedulers, the
step, every rank's RNG states and the data position (epoch and batch within it), so a
run killed and resumed ends bit-for-bit where an uninterrupted one does (on the CPU).

``trainer.max_minutes`` is a budget for the whole process from the trainer's start, the
final checkpoint and validation included (see :meth:`Trainer.fit`).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections import defaultdict

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from stylization.engine import checkpoint as ckpt_io
from stylization.engine.distributed import DistEnv, all_reduce_mean, broadcast_object, gather_objects
from stylization.engine.ema import EMA
from stylization.engine.sampler import ResumableSampler
from stylization.engine.stage import StepContext, TrainingStage
from stylization.errors import CheckpointError, ConfigError
from stylization.numerics import native_bf16

log = logging.getLogger("stylization.train")


def to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class EpochKeyed(Dataset):
    """Wraps a dataset so that items are fetched by (epoch, index) keys.

    The epoch travels with every index, so persistent DataLoader workers (which keep their
    caches across epochs) still see each epoch's randomness: datasets with ``set_epoch``
    are told the epoch before the item is built.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class EpochSampler(Sampler):
    """A :class:`ResumableSampler` whose indices come out as (epoch, index) keys."""

    def __init__(self, sampler: ResumableSampler):
        self.sampler = sampler

    def __iter__(self):
        return ((self.sampler.epoch, i) for i in self.sampler)

    def __len__(self):
        return len(self.sampler)


def single_threaded_worker(worker_id: int) -> None:
    """DataLoader workers compute with one thread each. Decoding and resizing need no more, and
    each worker's default pool (one thread per core) competes with the training process for the
    same cores: on 2 shared cores that made steps several times slower."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


class DataStream:
    """Endless batches with a resumable position (epoch, batches consumed in that epoch).

    One DataLoader serves the whole run; with workers they are persistent, so per-worker
    caches (mel spectrograms, decoded clips) survive from epoch to epoch.
    """

    def __init__(self, dataset, batch_size: int, env: DistEnv, seed: int, num_workers: int, epoch=0, batch_in_epoch=0):
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.sampler = ResumableSampler(len(dataset), env.rank, env.world_size, seed)
        if self.sampler.per_rank < batch_size:
            raise ConfigError(
                f"the training set has {len(dataset)} windows ({self.sampler.per_rank} per process), fewer than "
                f"stage.batch_size={batch_size}; lower the batch size or window length, or add data")
        self.epoch, self.batch_in_epoch = epoch, batch_in_epoch
        # A private generator keeps DataLoader from drawing its base seed from the global
        # RNG, which would make resumed runs differ from uninterrupted ones.
        self.loader = DataLoader(EpochKeyed(dataset), batch_size, sampler=EpochSampler(self.sampler),
                                 num_workers=num_workers, drop_last=True, pin_memory=env.device.type == "cuda",
                                 persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed),
                                 worker_init_fn=single_threaded_worker if num_workers > 0 else None)
        self._iter = None

    def _start_epoch(self):
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch * self.batch_size)
        self._iter = iter(self.loader)

    def next(self):
        if self._iter is None:
            self._start_epoch()
        try:
            batch = next(self._iter)
        except StopIteration:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self._start_epoch()
            batch = next(self._iter)
        self.batch_in_epoch += 1
        return batch


class Trainer:
    """Runs a :class:`TrainingStage` under ``cfg.trainer`` (see configs/trainer/default.yaml)."""

    def __init__(self, cfg: DictConfig, stage: TrainingStage, env: DistEnv):
        self.cfg, self.tcfg, self.stage, self.env = cfg, cfg.trainer, stage, env
        self.run_dir = str(self.tcfg.run_dir)
        self._validate_options()
        # The budget clock starts here, so building modules, resuming and starting the data
        # workers are paid from trainer.max_minutes too.
        self.started = time.monotonic()
        budget_s = math.inf if self.tcfg.max_minutes is None else 60.0 * float(self.tcfg.max_minutes)
        self.deadline = self.started + budget_s  # time.monotonic() seconds; inf without a budget
        # The last measured wall time of a step, a checkpoint save and a whole validation
        # (seconds; 0 until measured): what must still fit before the deadline when a step starts.
        self.last_seconds = {"step": 0.0, "checkpoint": 0.0, "validation": 0.0}
        precision = str(self.tcfg.precision)
        self.use_bf16 = precision == "bf16" or (precision == "auto" and env.device.type == "cuda")
        torch.backends.cuda.matmul.allow_tf32 = bool(self.tcfg.allow_tf32)
        torch.backends.cudnn.allow_tf32 = bool(self.tcfg.allow_tf32)

        seed = int(cfg.seed) + env.rank  # seeds are per rank
        torch.manual_seed(seed)
        self.generator = torch.Generator(env.device).manual_seed(seed)
        self.raw_modules = {k: m.to(env.device) for k, m in stage.build_modules().items()}
        self.modules = {k: self._wrap(m) for k, m in self.raw_modules.items()}
        self.optimizers = stage.build_optimizers(self.raw_modules)
        self.schedulers = stage.build_schedulers(self.optimizers)
        decay = self.tcfg.ema_decay
        unknown = set(stage.ema_modules) - set(self.raw_modules)
        if unknown:
            raise ConfigError(f"stage.ema_modules names unknown modules {sorted(unknown)}; known: {sorted(self.raw_modules)}")
        rampup = self.tcfg.get("ema_rampup")
        self.ema = {} if decay is None else {
            k: EMA(self.raw_modules[k], float(decay), None if rampup is None else float(rampup)) for k in stage.ema_modules}
        self.ctx = StepContext(self)
        self.step, epoch, batch_in_epoch = 0, 0, 0
        resumed = self._maybe_resume()
        if resumed is not None:
            epoch, batch_in_epoch = resumed
        self.data = DataStream(stage.train_dataset(), stage.batch_size, env, int(cfg.seed), int(self.tcfg.num_workers),
                               epoch, batch_in_epoch)
        self.val_set = stage.val_dataset()
        self.writer = None
        if env.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(self.run_dir, "tb"), purge_step=self.step if self.step else None)

    # -- set-up -----------------------------------------------------------------------

    def _validate_options(self):
        t = self.tcfg
        if t.max_steps is None and t.max_minutes is None:
            raise ConfigError("set trainer.max_steps or trainer.max_minutes (or both)")
        if t.max_steps is not None and int(t.max_steps) < 0:
            raise ConfigError(f"trainer.max_steps must be >= 0, got {t.max_steps}")
        if t.max_minutes is not None and float(t.max_minutes) <= 0:
            raise ConfigError(f"trainer.max_minutes must be > 0 (or null for no time budget), got {t.max_minutes}")
        if str(t.precision) not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"trainer.precision must be auto, bf16 or fp32, got {t.precision!r}")
        if str(t.precision) == "bf16" and self.env.device.type == "cpu":
            if not native_bf16(self.env.device):
                log.warning("this CPU has no native bf16: bf16 autocast will be slow; trainer.precision=auto uses fp32")

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.env.world_size > 1 and any(p.requires_grad for p in module.parameters()):
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            return DistributedDataParallel(module, device_ids=ids,
                                           find_unused_parameters=bool(self.stage.find_unused_parameters))
        return module

    def _maybe_resume(self):
        resume = self.tcfg.resume
        if resume in (None, "none", "null", False):
            return None
        if resume == "auto":
            found = ckpt_io.load_latest(self.run_dir)
            if found is None:
                return None
            path, state = found
        else:
            path, state = str(resume), ckpt_io.load_file(str(resume))
            if state.get("format") != ckpt_io.FORMAT:
                raise CheckpointError(f"not a training checkpoint of this project (format {state.get('format')!r})", path)
        self._load_state(state, path)
        log.info("resumed from %s at step %d", path, self.step)
        return int(state["epoch"]), int(state["batch_in_epoch"])

    def _load_state(self, state: dict, path: str):
        if state.get("stage") != self.stage.name:
            raise CheckpointError(f"checkpoint is of stage {state.get('stage')!r}, this run is {self.stage.name!r}", path)
        for kind, live, saved in (("modules", self.raw_modules, state["modules"]), ("ema", {k: e.shadow for k, e in self.ema.items()}, state["ema"]),
                                  ("optimizers", self.optimizers, state["optimizers"]),
                                  ("schedulers", self.schedulers, state["schedulers"])):
            if set(live) != set(saved):
                raise CheckpointError(f"{kind} {sorted(saved)} in the checkpoint, {sorted(live)} in this run", path)
            for name, obj in live.items():
                try:
                    if isinstance(obj, nn.Module):
                        obj.load_state_dict(saved[name], strict=True)
                    else:
                        obj.load_state_dict(saved[name])
                except (RuntimeError, ValueError, KeyError) as exc:  # what torch raises for a mismatched state
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise CheckpointError(f"{kind[:-1]} {name!r} does not match this run (another configuration or "
                                          f"code version made it): {first}; resume it with the code and config that "
                                          "made it, or start a new trainer.run_dir", path) from None
        self.step = int(state["step"])
        self.stage.load_state_dict(dict(state.get("stage_state", {})))
        rng = state["rng"]
        if len(rng) != self.env.world_size:
            log.warning("checkpoint has RNG states of %d ranks, this run has %d: RNG streams restart", len(rng),
                        self.env.world_size)
        else:
            ckpt_io.restore_rng(rng[self.env.rank], self.generator)

    def _state(self) -> dict:
        rng = gather_objects(ckpt_io.capture_rng(self.generator), self.env)
        return {
            "format": ckpt_io.FORMAT,
            "stage": self.stage.name,
            "step": self.step,
            "epoch": self.data.epoch,
            "batch_in_epoch": self.data.batch_in_epoch,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "code_version": ckpt_io.code_version(),
            "modules": {k: m.state_dict() for k, m in self.raw_modules.items()},
            "ema": {k: e.shadow.state_dict() for k, e in self.ema.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": rng,
            "stage_state": self.stage.state_dict(),
        }

    def save_checkpoint(self) -> str:
        began = time.monotonic()
        state = self._state()  # every rank takes part in gathering RNG states
        path = ckpt_io.checkpoint_path(self.run_dir, self.step)
        if self.env.is_main:
            ckpt_io.atomic_save(state, path)
            ckpt_io.prune_checkpoints(self.run_dir, int(self.tcfg.keep_checkpoints))
            log.info("saved %s", path)
        self.last_seconds["checkpoint"] = time.monotonic() - began
        return path

    # -- one step ----------------------------------------------------------------------

    def optimize(self, name: str, loss: torch.Tensor) -> float:
        if name not in self.optimizers:
            raise KeyError(f"no optimizer {name!r}; the stage built {sorted(self.optimizers)}")
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        clip = self.tcfg.grad_clip_norm
        if clip is not None and params:
            norm = torch.nn.utils.clip_grad_norm_(params, float(clip))
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params])) if params else torch.zeros(())
        opt.step()
        return float(norm)

    # -- the loop ----------------------------------------------------------------------

    def budget_spent(self) -> float:
        """The share of ``trainer.max_minutes`` spent since the trainer started (0 without a budget), as
        rank 0 measures it."""
        if self.deadline == math.inf:
            return 0.0
        spent = (time.monotonic() - self.started) / (self.deadline - self.started)
        return float(broadcast_object(spent, self.env))

    def out_of_time(self) -> bool:
        """Whether one more step would leave too little of ``trainer.max_minutes`` for the end.

        The rule: a step starts only if the step, then the final checkpoint and the final
        validation fit before the deadline, each at its last measured duration. Before a
        validation has been measured its cost is unknown (0 here); :meth:`validate` then stops
        at the deadline instead. Rank 0 decides for every rank, so that all ranks stop at the
        same step (a rank that stopped alone would leave the others waiting in DDP).
        """
        if self.deadline == math.inf:
            return False
        cost = self.last_seconds["step"] + self.last_seconds["checkpoint"]
        if self.val_set is not None:
            cost += self.last_seconds["validation"]
        return bool(broadcast_object(time.monotonic() + cost > self.deadline, self.env))

    def fit(self) -> int:
        """Train until ``trainer.max_steps`` or ``trainer.max_minutes``; returns the final step.

        With ``trainer.max_minutes`` the run stops early enough for its final checkpoint and
        validation to fit in the budget (:meth:`out_of_time`), and every validation stops at the
        budget's end, so the process ends within the budget plus at most about one step, one
        checkpoint save and one validation batch.
        """
        t = self.tcfg
        max_steps = math.inf if t.max_steps is None else int(t.max_steps)
        sums, count = defaultdict(float), 0
        bar = tqdm(total=None if max_steps == math.inf else max_steps, initial=self.step, disable=not self.env.is_main,
                   desc=self.stage.name, dynamic_ncols=True)
        last_saved = None
        try:
            while self.step < max_steps:
                if self.out_of_time():
                    log.info("trainer.max_minutes=%s reached at step %d (%.2f min left for the final checkpoint and "
                             "validation)", t.max_minutes, self.step, (self.deadline - time.monotonic()) / 60.0)
                    break
                began = time.monotonic()
                batch = to_device(self.data.next(), self.env.device)
                for m in self.raw_modules.values():
                    # frozen modules (no trainable parameter) stay in eval mode: BatchNorm keeps its statistics
                    m.train(any(p.requires_grad for p in m.parameters()))
                self.ctx.step = self.step
                logs = self.stage.training_step(batch, self.ctx)
                for s in self.schedulers.values():
                    s.step()
                for name, e in self.ema.items():
                    e.update(self.raw_modules[name], self.step + 1)
                self.step += 1
                self.last_seconds["step"] = time.monotonic() - began
                for k, v in logs.items():
                    sums[k] += float(v)
                count += 1
                bar.update(1)
                if self.step % int(t.log_every_steps) == 0 or self.step == max_steps:
                    self._log_scalars({k: v / count for k, v in sums.items()}, "train", bar)
                    sums, count = defaultdict(float), 0
                if self.val_set is not None and self.step % int(t.val_every_steps) == 0:
                    self.validate()
                if t.image_every_steps and self.step % int(t.image_every_steps) == 0:
                    self._log_images(batch)
                if self.step % int(t.checkpoint_every_steps) == 0:
                    last_saved = self.step
                    self.save_checkpoint()
        finally:
            bar.close()
        if last_saved != self.step:
            self.save_checkpoint()
        if self.val_set is not None and self.step % int(t.val_every_steps) != 0:
            self.validate()
        if self.writer is not None:
            self.writer.close()
        return self.step

    def _log_scalars(self, values: dict[str, float], prefix: str, bar=None):
        values = all_reduce_mean(values, self.env)
        if not self.env.is_main:
            return
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}/{k}", v, self.step)
        if prefix == "train":
            for name, opt in self.optimizers.items():
                self.writer.add_scalar(f"lr/{name}", opt.param_groups[0]["lr"], self.step)
        text = " ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
        log.info("step %d %s %s", self.step, prefix, text)
        if bar is not None:
            bar.set_postfix_str(text[:80])

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Average the stage's validation scalars over up to ``trainer.val_batches`` batches.

        At the ``trainer.max_minutes`` deadline it stops after the batch in progress (at least
        one batch runs, so every validation logs its scalars). The global RNG state is restored
        afterwards, so validation never changes training.
        """
        began = time.monotonic()
        rng = ckpt_io.capture_rng(self.generator)
        loader = DataLoader(self.val_set, self.stage.batch_size, shuffle=False, num_workers=0, drop_last=False,
                            generator=torch.Generator().manual_seed(0))
        for m in self.raw_modules.values():
            m.eval()
        for e in self.ema.values():
            e.shadow.eval()
        sums, n, cut = defaultdict(float), 0, False
        limit = int(self.tcfg.val_batches)
        for batch in itertools.islice(loader, limit):
            for k, v in self.stage.validation_step(to_device(batch, self.env.device), self.ctx).items():
                sums[k] += float(v)
            n += 1
            if n < limit and time.monotonic() > self.deadline:
                cut = True
                log.info("validation stopped after %d of up to %d batches: trainer.max_minutes=%s is spent", n, limit,
                         self.tcfg.max_minutes)
                break
        ckpt_io.restore_rng(rng, self.generator)
        if not cut:  # a cut validation would under-estimate the next one
            self.last_seconds["validation"] = time.monotonic() - began
        means = {k: v / max(n, 1) for k, v in sums.items()}
        self._log_scalars(means, "val")
        return means

    @torch.no_grad()
    def _log_images(self, batch):
        if not self.env.is_main:
            return
        from torchvision.utils import make_grid

        rng = ckpt_io.capture_rng(self.generator)
        for m in self.raw_modules.values():
            m.eval()
        for name, images in self.stage.visualize(batch, self.ctx).items():
            self.writer.add_image(f"images/{name}", make_grid(images.float().clamp(0, 1).cpu(), nrow=8), self.step)
        ckpt_io.restore_rng(rng, self.generator)
