"""The training engine: sampler, checkpoints, EMA, and exact resume after a kill."""

import os
import time

import pytest
import torch
from conftest import compose_train, tiny_audio2exp_overrides
from torch import nn
from torch.utils.data import Dataset

from stylization.engine import checkpoint as ckpt_io
from stylization.engine.distributed import init_distributed
from stylization.engine.ema import EMA
from stylization.engine.run import build_stage
from stylization.engine.sampler import ResumableSampler
from stylization.engine.stage import TrainingStage
from stylization.engine.trainer import Trainer
from stylization.errors import CheckpointError, ConfigError


def test_sampler_partitions_and_resumes():
    shares = [ResumableSampler(10, rank=r, world_size=3, seed=1) for r in range(3)]
    for s in shares:
        s.set_epoch(2)
    covered = sorted(i for s in shares for i in s)
    assert len(covered) == 12 and set(covered) == set(range(10))  # padded by wrapping, as DDP does
    s = ResumableSampler(10, seed=1)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start=6)
    assert list(s) == full[6:] and len(s) == 4
    s.set_epoch(5)
    assert list(s) != full


def test_sampler_world_of_four_shares_are_disjoint_and_padded_from_the_epoch_start():
    """Four global ranks (e.g. two nodes x two processes): rank r reads entries r, r + 4, ... of the
    epoch's order; 10 samples pad to 12 with the order's first two entries, which ranks 2 and 3 read
    last (the samples ranks 0 and 1 read first): those two are seen twice that epoch."""
    order = ResumableSampler(10, seed=1)
    order.set_epoch(2)
    order = list(order)  # a world of one reads the epoch's whole order
    shares = [ResumableSampler(10, rank=r, world_size=4, seed=1) for r in range(4)]
    for s in shares:
        s.set_epoch(2)
    lists = [list(s) for s in shares]
    assert [len(s) for s in shares] == [len(x) for x in lists] == [3, 3, 3, 3]
    assert [x[k] for k in range(3) for x in lists] == order + order[:2]
    assert (lists[2][-1], lists[3][-1]) == (lists[0][0], lists[1][0])
    unpadded = lists[0] + lists[1] + lists[2][:-1] + lists[3][:-1]
    assert sorted(unpadded) == list(range(10))  # apart from the padding, an exact partition
    even = [ResumableSampler(12, rank=r, world_size=4, seed=1).indices() for r in range(4)]
    assert sorted(i for x in even for i in x) == list(range(12))  # no padding: an exact partition
    with pytest.raises(ValueError, match="rank 4 is outside a world of 4"):
        ResumableSampler(10, rank=4, world_size=4)


def test_sampler_resumes_the_epoch_in_another_world_size():
    """The data position counts samples of the whole world: 4 ranks that drew 1 batch of 2 leave 12
    of 20 samples, which 2 or 3 ranks then share; an unchanged world continues its own shares."""
    order = ResumableSampler(20, seed=5).indices()
    four = [ResumableSampler(20, rank=r, world_size=4, seed=5) for r in range(4)]
    for r, s in enumerate(four):
        s.set_epoch(0, start=8)
        assert s.indices() == ResumableSampler(20, rank=r, world_size=4, seed=5).indices()[2:]
    for world in (2, 3):
        rest = [ResumableSampler(20, rank=r, world_size=world, seed=5) for r in range(world)]
        for s in rest:
            s.set_epoch(0, start=8)
        assert sorted(i for s in rest for i in s) == sorted(order[8:]) and {len(s) for s in rest} == {12 // world}
    past_the_end = ResumableSampler(20, rank=1, world_size=4, seed=5)
    past_the_end.set_epoch(0, start=22)  # padding consumed: the epoch is over
    assert len(past_the_end) == 0 and list(past_the_end) == []


def test_atomic_save_and_safe_load(tmp_path):
    path = tmp_path / "x" / "ckpt.pt"
    ckpt_io.atomic_save({"a": torch.ones(3)}, path)
    assert os.listdir(path.parent) == ["ckpt.pt"]
    assert torch.equal(ckpt_io.load_file(path)["a"], torch.ones(3))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot be loaded safely") as info:
        ckpt_io.load_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="not found; get it from X"):
        ckpt_io.load_file(tmp_path / "none.pt", source_hint="get it from X")


def test_ema_tracks_the_average():
    m = nn.Linear(2, 2)
    ema = EMA(m, decay=0.5)
    with torch.no_grad():
        before = ema.shadow.weight.clone()
        m.weight.add_(2.0)
    ema.update(m)
    assert torch.allclose(ema.shadow.weight, before + 1.0)
    assert not any(p.requires_grad for p in ema.shadow.parameters())


class NoiseData(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"x": torch.randn(4, generator=g), "y": torch.randn(2, generator=g)}


class NoisyStage(TrainingStage):
    """A tiny stage that uses every source of randomness: dropout (global RNG) and ctx.generator."""

    crash_at_step = None

    def build_modules(self):
        return {"net": nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 2))}

    def build_optimizers(self, modules):
        return {"net": torch.optim.AdamW(modules["net"].parameters(), lr=1e-2)}

    def build_schedulers(self, optimizers):
        return {"net": torch.optim.lr_scheduler.StepLR(optimizers["net"], step_size=3, gamma=0.5)}

    def train_dataset(self):
        return NoiseData()

    def val_dataset(self):
        return NoiseData()

    def training_step(self, batch, ctx):
        if ctx.step == self.crash_at_step:
            raise KeyboardInterrupt("killed")
        noise = torch.randn(batch["x"].shape, generator=ctx.generator, device=ctx.device)
        loss = ((ctx.modules["net"](batch["x"] + 0.1 * noise) - batch["y"]) ** 2).mean()
        ctx.optimize("net", loss)
        return {"loss": loss.detach()}

    def validation_step(self, batch, ctx):
        torch.randn(3)  # validation may use the global RNG; the trainer restores it
        return {"loss": ((ctx.eval_modules["net"](batch["x"]) - batch["y"]) ** 2).mean()}


def noisy_cfg(run_dir, max_steps):
    cfg = compose_train(tiny_audio2exp_overrides("/unused", run_dir, max_steps=max_steps, checkpoint_every_steps=4))
    cfg.stage.name, cfg.stage.batch_size, cfg.stage.ema_modules = "noisy", 3, ["net"]
    return cfg


def train_noisy(run_dir, max_steps, crash_at_step=None):
    stage = NoisyStage(noisy_cfg(run_dir, max_steps))
    stage.crash_at_step = crash_at_step
    trainer = Trainer(stage.cfg, stage, init_distributed("cpu"))
    trainer.fit()
    return trainer


def module_state(trainer):
    return {**{f"m.{k}": v for k, v in trainer.raw_modules["net"].state_dict().items()},
            **{f"ema.{k}": v for k, v in trainer.ema["net"].shadow.state_dict().items()}}


def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path):
    full = train_noisy(str(tmp_path / "full"), max_steps=10)
    with pytest.raises(KeyboardInterrupt):
        train_noisy(str(tmp_path / "killed"), max_steps=10, crash_at_step=6)  # dies after saving step 4
    saved = [os.path.basename(p) for p in ckpt_io.list_checkpoints(str(tmp_path / "killed"))]
    assert saved == ["step_000000004.pt"]
    resumed = train_noisy(str(tmp_path / "killed"), max_steps=10)
    assert resumed.step == 10 and (resumed.data.epoch, resumed.data.batch_in_epoch) == (full.data.epoch, full.data.batch_in_epoch) == (3, 1)
    a, b = module_state(full), module_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.optimizers["net"].param_groups[0]["lr"] == full.optimizers["net"].param_groups[0]["lr"]


def test_resume_from_another_world_size_continues_the_epoch(tmp_path, caplog):
    """A checkpoint of two ranks without samples_in_epoch (an older one) that drew one batch each of
    its epoch: one process resumes after those 2 x 3 windows, with a warning that the RNG restarts."""
    run_dir = str(tmp_path / "r")
    train_noisy(run_dir, max_steps=4)  # 10 windows, batches of 3: step 4 is epoch 1's first batch
    path = ckpt_io.list_checkpoints(run_dir)[-1]
    state = ckpt_io.load_file(path)
    assert (state["epoch"], state["samples_in_epoch"], state["batch_in_epoch"]) == (1, 3, 1)
    del state["samples_in_epoch"]
    state["rng"] = state["rng"] * 2
    ckpt_io.atomic_save(state, path)
    with caplog.at_level("WARNING", logger="stylization.train"):
        resumed = train_noisy(run_dir, max_steps=5)
    assert "RNG states of 2 ranks, this run has 1" in caplog.text
    epoch_1 = ResumableSampler(10, seed=0)
    epoch_1.set_epoch(1)
    assert resumed.data.first_indices == epoch_1.indices()[6:9]
    assert (resumed.data.epoch, resumed.data.samples_in_epoch) == (1, 9)


def test_audio2exp_resume_is_bit_exact(tiny_corpus, tmp_path):
    def run(run_dir, crash=None):
        cfg = compose_train(tiny_audio2exp_overrides(tiny_corpus, run_dir, max_steps=8))
        stage = build_stage(cfg)
        if crash is not None:
            original = stage.training_step

            def training_step(batch, ctx):
                if ctx.step == crash:
                    raise RuntimeError("simulated crash")
                return original(batch, ctx)

            stage.training_step = training_step
        trainer = Trainer(cfg, stage, init_distributed("cpu"))
        trainer.fit()
        return trainer.raw_modules["audio2exp"].state_dict()

    full = run(str(tmp_path / "full"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(str(tmp_path / "crash"), crash=5)  # newest checkpoint: step 4, mid-epoch
    resumed = run(str(tmp_path / "crash"))
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert os.path.isfile(tmp_path / "crash" / "checkpoints" / "step_000000008.pt")
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path / "full" / "tb"))


def test_damaged_newest_checkpoint_falls_back(tmp_path):
    run_dir = str(tmp_path / "r")
    train_noisy(run_dir, max_steps=8)
    newest = ckpt_io.list_checkpoints(run_dir)[-1]
    with open(newest, "r+b") as f:
        f.truncate(100)
    path, state = ckpt_io.load_latest(run_dir)
    assert state["step"] == 4 and path.endswith("step_000000004.pt")


def test_checkpoint_is_self_describing(tmp_path):
    train_noisy(str(tmp_path / "r"), max_steps=4)
    state = ckpt_io.load_file(ckpt_io.list_checkpoints(str(tmp_path / "r"))[-1])
    assert state["stage"] == "noisy" and state["config"]["stage"]["batch_size"] == 3
    assert set(state) >= {"modules", "ema", "optimizers", "schedulers", "rng", "epoch", "batch_in_epoch", "code_version"}


def test_option_errors_are_clear(tmp_path):
    cfg = noisy_cfg(str(tmp_path), 2)
    cfg.trainer.precision = "fp16"
    with pytest.raises(ConfigError, match="trainer.precision"):
        Trainer(cfg, NoisyStage(cfg), init_distributed("cpu"))
    cfg = noisy_cfg(str(tmp_path), 2)
    cfg.stage.batch_size = 64
    with pytest.raises(ConfigError, match="fewer than stage.batch_size=64"):
        Trainer(cfg, NoisyStage(cfg), init_distributed("cpu"))


class SlowValidationStage(NoisyStage):
    """NoisyStage whose validation batches each take ``val_batch_seconds`` (a stand-in for a
    renderer validating under load); it records how many batches each validation ran."""

    val_batch_seconds = 0.0

    def __init__(self, cfg):
        super().__init__(cfg)
        self.val_batches_run = []  # one count per validation

    def validation_step(self, batch, ctx):
        time.sleep(self.val_batch_seconds)
        self.val_batches_run[-1] += 1
        return super().validation_step(batch, ctx)


def timed_budget_run(run_dir, budget_s, val_batch_s, val_every_steps):
    """Build and fit a trainer with ``trainer.max_minutes = budget_s / 60``; returns (trainer, stage, seconds)."""
    # One-time imports (TensorBoard; torch._dynamo on the first optimiser) before the clock starts.
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    torch.optim.AdamW(nn.Linear(1, 1).parameters())

    cfg = noisy_cfg(run_dir, 2)
    cfg.trainer.max_steps, cfg.trainer.max_minutes = None, budget_s / 60.0
    cfg.trainer.val_every_steps, cfg.trainer.val_batches = val_every_steps, 4  # 10 items in batches of 3: 4 batches
    cfg.trainer.checkpoint_every_steps = cfg.trainer.log_every_steps = 10**6
    cfg.trainer.image_every_steps = 0
    stage = SlowValidationStage(cfg)
    stage.val_batch_seconds = val_batch_s
    began = time.monotonic()
    trainer = Trainer(cfg, stage, init_distributed("cpu"))
    validate = trainer.validate

    def counted_validate():
        stage.val_batches_run.append(0)
        return validate()

    trainer.validate = counted_validate
    trainer.fit()
    return trainer, stage, time.monotonic() - began


def test_max_minutes_counts_the_final_validation_in(tmp_path):
    """trainer.max_minutes bounds the whole run, the final checkpoint and validation included.

    Without the rule each run below would train for the full budget and then validate for
    another 0.8 s (first run) or 2 s (second run)."""
    # A validation (4 x 0.2 s) measured during the run: training stops early enough for the
    # final validation to run whole within the budget.
    trainer, stage, seconds = timed_budget_run(str(tmp_path / "measured"), 3.0, 0.2, val_every_steps=25)
    assert trainer.step > 25 and len(stage.val_batches_run) >= 2
    assert stage.val_batches_run[-1] == 4
    assert seconds < 3.0 + 0.4, seconds
    # No validation before the end: the final one is cut at the deadline, after its first batch.
    trainer, stage, seconds = timed_budget_run(str(tmp_path / "cut"), 2.0, 0.5, val_every_steps=10**6)
    assert trainer.step > 0 and stage.val_batches_run == [1]
    assert seconds < 2.0 + 0.5 + 0.4, seconds
    assert ckpt_io.list_checkpoints(str(tmp_path / "cut"))[-1].endswith(f"step_{trainer.step:09d}.pt")


WORKER_THREADS = """
import cv2, numpy as np, torch
from torch.utils.data import Dataset
from stylization.engine.distributed import DistEnv
from stylization.engine.trainer import DataStream


class ThreadCount(Dataset):  # each item: the torch and OpenCV threads of the process that made it
    def __len__(self):
        return 4

    def __getitem__(self, index):
        cv2.GaussianBlur(np.zeros((512, 512, 3), np.float32), (15, 15), 3)
        return torch.tensor([torch.get_num_threads(), cv2.getNumThreads()])


cv2.setNumThreads(2)
cv2.GaussianBlur(np.zeros((2048, 2048, 3), np.float32), (31, 31), 5)  # the parent's pool has run
stream = DataStream(ThreadCount(), 2, DistEnv(0, 1, 0, torch.device("cpu")), seed=0, num_workers=1)
print(stream.next().tolist(), cv2.getNumThreads())
"""


def test_data_workers_compute_single_threaded():
    """Workers run one torch and one OpenCV thread, also when the parent had used OpenCV's pool
    before forking them (``cv2.setNumThreads`` inside a forked worker would hang there), and the
    parent's OpenCV setting is left as it was."""
    import subprocess
    import sys

    from conftest import REPO

    out = subprocess.run([sys.executable, "-c", WORKER_THREADS], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[[1,", "1],", "[1,", "1]]", "2"], out.stdout


def test_resuming_a_run_of_another_configuration_is_a_clear_error(tiny_corpus, tmp_path):
    """A run directory made with other model widths cannot resume this run: one CheckpointError
    naming the module and the way out, not a torch traceback."""
    run_dir = str(tmp_path / "r")
    cfg = compose_train(tiny_audio2exp_overrides(tiny_corpus, run_dir, max_steps=2))
    Trainer(cfg, build_stage(cfg), init_distributed("cpu")).fit()
    wider = compose_train(tiny_audio2exp_overrides(tiny_corpus, run_dir, max_steps=4)
                          + ["model.channels=[8,16,32,64,256]"])
    with pytest.raises(CheckpointError, match="module 'audio2exp' does not match this run.*new trainer.run_dir"):
        Trainer(wider, build_stage(wider), init_distributed("cpu")).fit()
