"""CPU processes under torchrun (gloo): two on one node, and two "nodes" of two on one machine;
the same code path as a single process."""

import ast
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_audio2exp_overrides

from stylization.engine.sampler import ResumableSampler


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


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it for a socket bound to port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_nodes(launch: list[list[str]], overrides: list[str], logs: Path, timeout_s: float) -> list[int]:
    """Start one torchrun per "node" at once (``launch[i]`` are node i's rendezvous flags) and wait
    for both; returns their exit codes. Each launcher leads its own process group, so on a timeout
    or an error both are killed with their workers (a worker left waiting in a collective would
    otherwise hang until the process group's timeout)."""
    procs = []
    try:
        for node, flags in enumerate(launch):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=2", *flags,
                   "train.py", *overrides]
            with open(logs / f"node{node}.out", "w") as out, open(logs / f"node{node}.err", "w") as err:
                # Files, not pipes: a launcher blocked on a full pipe would stall the other node too.
                procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err, start_new_session=True,
                                              env={**os.environ, "OMP_NUM_THREADS": "1"}))
        deadline = time.monotonic() + timeout_s
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def logged_first_batches(log_text: str) -> list[dict[int, list[int]]]:
    """Each "first batch's sample indices by rank" the trainer logged, as {global rank: indices}."""
    return [ast.literal_eval(m) for m in re.findall(r"first batch's sample indices by rank: (\{.*\})", log_text)]


@pytest.mark.slow
def test_torchrun_two_nodes_two_processes(tiny_corpus, tmp_path):
    """docs/training.md's multi-node recipe as 2 nodes x 2 processes on one machine (gloo): the first
    run rendezvouses like the c10d command, the resume like the static one (--node_rank,
    --master_addr). Ranks are global over both nodes: four disjoint data shares, four RNG states."""
    run_dir = tmp_path / "two_nodes"
    batch, n_windows = 2, 24  # the tiny corpus cut into 8-frame windows: 6 per rank, 3 batches an epoch
    overrides = [o for o in tiny_audio2exp_overrides(tiny_corpus, run_dir, checkpoint_every_steps=100,
                                                     image_every_steps=0, log_every_steps=1)
                 if not o.startswith(("stage.batch_size=", "stage.window_frames=", "trainer.max_steps="))]
    overrides += [f"stage.batch_size={batch}", "stage.window_frames=8", "data.val_split=null"]

    port = free_port()
    c10d = ["--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two_nodes"]
    codes = run_two_nodes([c10d, c10d], overrides + ["trainer.max_steps=2"], tmp_path, timeout_s=150)
    errors = "\n".join((tmp_path / f"node{i}.err").read_text()[-3000:] for i in (0, 1))
    assert codes == [0, 0], errors
    log_text = (run_dir / "train.log").read_text()
    assert "world size 4, nodes 2" in log_text
    state = torch.load(run_dir / "checkpoints" / "step_000000002.pt", weights_only=True)
    assert len(state["rng"]) == 4  # one per global rank, both nodes
    generators = [r["generator"] for r in state["rng"]]
    assert all(not torch.equal(generators[0], g) for g in generators[1:])  # seeds are seed + global rank
    # After two steps every rank drew two batches of the epoch: 4 ranks x 2 batches x 2 windows.
    assert (state["epoch"], state["samples_in_epoch"]) == (0, 4 * 2 * batch)

    (first,) = logged_first_batches(log_text)
    assert sorted(first) == [0, 1, 2, 3]  # every rank of both nodes reported its first batch
    assert all(len(first[r]) == batch for r in first)
    seen = [i for r in first for i in first[r]]
    assert len(set(seen)) == len(seen) and set(seen) <= set(range(n_windows))  # disjoint shares
    # Rank r reads the global-rank-r share: with LOCAL_RANK in its place node 1's two processes
    # would repeat node 0's batches.
    for r in range(4):
        share = ResumableSampler(n_windows, rank=r, world_size=4, seed=0)
        assert first[r] == share.indices()[:batch]

    # The resume: the static form, node 1 known by --node_rank; it continues at step 2, mid-epoch.
    port = free_port()
    codes = run_two_nodes([[f"--node_rank={i}", "--master_addr=127.0.0.1", f"--master_port={port}"] for i in (0, 1)],
                          overrides + ["trainer.max_steps=3"], tmp_path, timeout_s=150)
    errors = "\n".join((tmp_path / f"node{i}.err").read_text()[-3000:] for i in (0, 1))
    assert codes == [0, 0], errors
    log_text = (run_dir / "train.log").read_text()
    assert "step_000000002.pt at step 2" in log_text
    _, resumed = logged_first_batches(log_text)
    order = ResumableSampler(n_windows, seed=0).indices()  # epoch 0's order (a world of one reads all of it)
    assert sorted(i for r in resumed for i in resumed[r]) == sorted(order[4 * 2 * batch :])  # the unread rest
    for r in range(4):
        share = ResumableSampler(n_windows, rank=r, world_size=4, seed=0)
        share.set_epoch(0, start=4 * 2 * batch)
        assert resumed[r] == share.indices()
    state = torch.load(run_dir / "checkpoints" / "step_000000003.pt", weights_only=True)
    assert state["step"] == 3 and len(state["rng"]) == 4 and (state["epoch"], state["samples_in_epoch"]) == (0, 24)
