"""The training loop shared by every stage.

One run directory holds everything a run writes::

    <run_dir>/config.yaml            the resolved config
    <run_dir>/train.log              the log (rank 0)
    <run_dir>/tb/                    TensorBoard scalars and image grids
    <run_dir>/checkpoints/step_*.pt  atomic checkpoints (see checkpoint.py)

Resuming (``trainer.resume=auto``) restores modules, EMA, optimisers, schedulers, the
step, every rank's RNG states and the data position (epoch and samples consumed in it), so a
run killed and resumed ends bit-for-bit where an uninterrupted one does (on the CPU). A
resume with another world size continues the epoch with the samples not yet consumed, but
its RNG streams restart (see :meth:`Trainer._load_state`).

With several processes (``torchrun``, one node or several) only global rank 0 writes to the
run directory: config.yaml, train.log, tb/ and checkpoints. Nothing is written under
``data.root``. Every rank reads the checkpoint rank 0 picks, so on several nodes the run
directory must be at the same path on every node (a shared filesystem).

``trainer.max_minutes`` is a budget for the whole process from the trainer's start, the
final checkpoint and validation included (see :meth:`Trainer.fit`).
"""

from __future__ import annotations

import contextlib
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
from stylization.errors import CheckpointError, ConfigError, DataError
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
    """DataLoader workers compute with one torch thread each. Decoding and resizing need no more,
    and each worker's default pool (one thread per core) competes with the training process for
    the same cores: on 2 shared cores that made steps several times slower. OpenCV's pool is set
    by the parent around the fork (:func:`opencv_threads`): ``cv2.setNumThreads`` in a forked
    worker hangs when the parent had used the pool (its threads are not in the child)."""
    torch.set_num_threads(1)


@contextlib.contextmanager
def opencv_threads(n: int):
    """OpenCV's thread pool at ``n`` threads inside the block, as it was after: forked DataLoader
    workers inherit the setting, so they decode with ``n`` threads without touching the pool."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class DataStream:
    """Endless batches with a resumable position: the epoch, and the samples of it that all
    ranks together have consumed (``samples_in_epoch``; :class:`ResumableSampler` shards the
    rest by global rank).

    One DataLoader serves the whole run; with workers they are persistent, so per-worker
    caches (mel spectrograms, decoded clips) survive from epoch to epoch.
    """

    def __init__(self, dataset, batch_size: int, env: DistEnv, seed: int, num_workers: int, epoch=0,
                 samples_in_epoch=0):
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.world_size = env.world_size
        self.sampler = ResumableSampler(len(dataset), env.rank, env.world_size, seed)
        if self.sampler.per_rank < batch_size:
            raise ConfigError(
                f"the training set has {len(dataset)} windows ({self.sampler.per_rank} per process), fewer than "
                f"stage.batch_size={batch_size}; lower the batch size or window length, or add data")
        self.epoch, self.samples_in_epoch = epoch, samples_in_epoch
        self.first_indices: list[int] | None = None  # dataset indices of this process's first batch
        # A private generator keeps DataLoader from drawing its base seed from the global
        # RNG, which would make resumed runs differ from uninterrupted ones.
        self.loader = DataLoader(EpochKeyed(dataset), batch_size, sampler=EpochSampler(self.sampler),
                                 num_workers=num_workers, drop_last=True, pin_memory=env.device.type == "cuda",
                                 persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed),
                                 worker_init_fn=single_threaded_worker if num_workers > 0 else None)
        self._iter = None

    @property
    def batch_in_epoch(self) -> int:
        """Whole batches of the current world size consumed in this epoch (each rank drew this many
        when the world size has not changed since the epoch began)."""
        return self.samples_in_epoch // (self.batch_size * self.world_size)

    def _start_epoch(self):
        self.sampler.set_epoch(self.epoch, self.samples_in_epoch)
        with opencv_threads(1) if self.num_workers > 0 else contextlib.nullcontext():
            self._iter = iter(self.loader)  # forks the workers (the first time: they persist)

    def next(self):
        if self._iter is None:
            self._start_epoch()
        try:
            batch = next(self._iter)
        except StopIteration:
            self.epoch, self.samples_in_epoch = self.epoch + 1, 0
            self._start_epoch()
            batch = next(self._iter)
        if self.first_indices is None:
            # The process's first batch is the first of the sampler's current pass.
            self.first_indices = self.sampler.indices()[: self.batch_size]
        self.samples_in_epoch += self.batch_size * self.world_size
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
        self.step, epoch, samples_in_epoch = 0, 0, 0
        resumed = self._maybe_resume()
        if resumed is not None:
            epoch, samples_in_epoch = resumed
        train_set = stage.train_dataset()
        self._check_same_training_set(len(train_set))
        self.data = DataStream(train_set, stage.batch_size, env, int(cfg.seed), int(self.tcfg.num_workers), epoch,
                               samples_in_epoch)
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

    def _check_same_training_set(self, n: int) -> None:
        """Every rank must index the same training set: the shares are slices of one permutation of
        ``n`` windows, so ranks that count differently (a node's copy of data.root that differs, or
        skip_damaged leaving out other clips there) would read overlapping shares and could run
        different numbers of batches, leaving the others waiting."""
        sizes = gather_objects(n, self.env)
        differ = [r for r, m in enumerate(sizes) if m != sizes[0]]
        if differ:
            raise DataError(f"the training set has {sizes[0]} windows on rank 0 but {sizes[differ[0]]} on rank "
                            f"{differ[0]} ({len(differ)} of {len(sizes)} ranks differ from rank 0); every node must "
                            "read the same data.root: a shared filesystem or identical copies",
                            OmegaConf.select(self.cfg, "data.root"))

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.env.world_size > 1 and any(p.requires_grad for p in module.parameters()):
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            return DistributedDataParallel(module, device_ids=ids,
                                           find_unused_parameters=bool(self.stage.find_unused_parameters))
        return module

    def _maybe_resume(self):
        """Load the checkpoint ``trainer.resume`` names; returns its (epoch, samples_in_epoch), or None.

        With ``auto``, rank 0 picks the newest checkpoint and every rank loads that file: ranks
        that each listed the directory could disagree (a node-local run directory, or a network
        filesystem that shows another node's newest file late) and would train from different
        states, or stop at different steps and leave the others waiting.
        """
        resume = self.tcfg.resume
        if resume in (None, "none", "null", False):
            return None
        state = None
        if resume == "auto":
            found = ckpt_io.load_latest(self.run_dir) if self.env.is_main else None
            path = broadcast_object(None if found is None else found[0], self.env)
            if path is None:
                return None
            if found is not None:
                state = found[1]
        else:
            path = str(resume)
        state = self._load_on_every_rank(path, state)
        if state.get("format") != ckpt_io.FORMAT:
            raise CheckpointError(f"not a training checkpoint of this project (format {state.get('format')!r})", path)
        self._load_state(state, path)
        log.info("resumed from %s at step %d", path, self.step)
        samples = state.get("samples_in_epoch")
        if samples is None:  # older checkpoints count whole batches of each of its len(rng) ranks
            samples = int(state["batch_in_epoch"]) * int(self.stage.batch_size) * len(state["rng"])
        return int(state["epoch"]), int(samples)

    def _load_on_every_rank(self, path: str, loaded: dict | None) -> dict:
        """``path`` loaded on this rank (``loaded`` when this rank has it already). With several
        ranks a file that some cannot load fails on all of them, naming those ranks, instead of
        leaving the others waiting in the first collective."""
        if self.env.world_size == 1:
            return loaded if loaded is not None else ckpt_io.load_file(path)
        error = None
        if loaded is None:
            try:
                loaded = ckpt_io.load_file(path)
            except CheckpointError as exc:
                error = exc.message
        errors = gather_objects(error, self.env)
        failed = [r for r, e in enumerate(errors) if e is not None]
        if failed:
            raise CheckpointError(f"ranks {failed} cannot load it ({errors[failed[0]]}); with several nodes "
                                  "trainer.run_dir (and a trainer.resume file) must be at the same path on every "
                                  "node: put the run directory on a shared filesystem", path)
        return loaded

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
            # No rank's stream maps onto another world's: each rank keeps its fresh seed + rank
            # stream. The data position carries over (samples_in_epoch counts all ranks).
            log.warning("checkpoint has RNG states of %d ranks, this run has %d: the epoch goes on with the samples "
                        "not yet consumed, but RNG streams restart from seed + rank (not bit-exact)", len(rng),
                        self.env.world_size)
        else:
            ckpt_io.restore_rng(rng[self.env.rank], self.generator)

    def _state(self, rng: list[dict]) -> dict:
        """The checkpoint dict; ``rng`` holds every rank's RNG states in rank order."""
        return {
            "format": ckpt_io.FORMAT,
            "stage": self.stage.name,
            "step": self.step,
            "epoch": self.data.epoch,
            "samples_in_epoch": self.data.samples_in_epoch,
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
        rng = gather_objects(ckpt_io.capture_rng(self.generator), self.env)  # every rank takes part
        path = ckpt_io.checkpoint_path(self.run_dir, self.step)
        if self.env.is_main:
            ckpt_io.atomic_save(self._state(rng), path)
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
        last_saved, shares_logged = None, False
        try:
            while self.step < max_steps:
                if self.out_of_time():
                    log.info("trainer.max_minutes=%s reached at step %d (%.2f min left for the final checkpoint and "
                             "validation)", t.max_minutes, self.step, (self.deadline - time.monotonic()) / 60.0)
                    break
                began = time.monotonic()
                batch = to_device(self.data.next(), self.env.device)
                if not shares_logged:
                    shares_logged = True
                    self._log_data_shares()
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

    def _log_data_shares(self):
        """With several processes, log once per start how the epoch is split and which samples each
        rank's first batch holds (the first 8 of each of the first 16 ranks): distinct lists show
        that the ranks, on however many nodes, read disjoint shares."""
        if self.env.world_size == 1:
            return
        firsts = gather_objects(self.data.first_indices, self.env)
        if not self.env.is_main:
            return
        s = self.data.sampler
        shown = {rank: indices[:8] for rank, indices in enumerate(firsts[:16])}
        log.info("data: %d training samples per epoch over %d processes, %d each (%d padding); first batch's sample "
                 "indices by rank: %s", s.n, s.world_size, s.per_rank, s.per_rank * s.world_size - s.n, shown)

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
