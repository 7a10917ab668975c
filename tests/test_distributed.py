"""Two CPU processes under torchrun (gloo): the same code path as a single process."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, tiny_audio2exp_overrides


@pytest.mark.slow
def test_torchrun_two_processes(tiny_corpus, tmp_path):
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
           *tiny_audio2exp_overrides(tiny_corpus, run_dir, max_steps=4, checkpoint_every_steps=100,
                                     image_every_steps=0)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "world size 2" in (run_dir / "train.log").read_text()
    state = torch.load(run_dir / "checkpoints" / "step_000000004.pt", weights_only=True)
    assert len(state["rng"]) == 2  # every rank's RNG state is kept for an exact resume
    assert not any(k.startswith("module.") for k in state["modules"]["audio2exp"])  # saved unwrapped


def test_cpu_threads_share_the_cores_among_local_processes(monkeypatch):
    import os

    from stylization.engine.distributed import cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cpu_threads() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads() == 3


@pytest.mark.slow
def test_torchrun_two_processes_saas_edit(tiny_corpus, tmp_path):
    """A SAAS generator stage under torchrun: the in-run codebook phase, then the generator (called
    through its forward, twice a step for the cycle) and its discriminators, all DDP-wrapped."""
    run_dir = tmp_path / "ddp_saas"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
           "stage=saas_edit", "model=saas_edit_small", f"data.root={tiny_corpus}", f"trainer.run_dir={run_dir}",
           "stage.batch_size=2", "trainer.max_steps=3", "stage.codebook_steps=1", "trainer.max_minutes=null",
           "data.val_split=null", "trainer.checkpoint_every_steps=3", "model.codebook.dim=32", "model.codebook.heads=2",
           "model.codebook.ffn=48", "model.codebook.layers=1", "model.codebook.n_codes=16",
           "model.generator.style_dim=32", "model.generator.latent_dim=8", "trainer.num_workers=0",
           "trainer.device=cpu", "trainer.image_every_steps=0"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    state = torch.load(run_dir / "checkpoints" / "step_000000003.pt", weights_only=True)
    assert state["stage_state"] == {"codebook_until": 1} and len(state["rng"]) == 2
    assert not any(k.startswith("module.") for k in state["modules"]["generator"])
