"""Checkpoint files: atomic writes, safe loads, RNG state, and finding the newest.

A training checkpoint is a plain dict of tensors and Python primitives (loadable with
``torch.load(..., weights_only=True)``)::

    {"format": "stylization-train/1", "stage": str, "step": int, "epoch": int,
     "samples_in_epoch": int (samples of the epoch all ranks together consumed; may be absent),
     "batch_in_epoch": int (whole batches each rank drew; resuming reads it only when
     samples_in_epoch is absent), "config": dict (the resolved config), "code_version": str,
     "modules": {name: state_dict}, "ema": {name: state_dict}, "optimizers": {...},
     "schedulers": {...}, "rng": [RNG state of each global rank, in rank order; its length is
     the world size that saved it],
     "stage_state": dict (the stage's own progress, TrainingStage.state_dict; may be absent)}

Only global rank 0 writes checkpoints; every rank reads the file rank 0 picks when resuming.

Files are ``<run_dir>/checkpoints/step_<step:09d>.pt``. The newest is the one with the
highest step *stored inside* that loads cleanly; a damaged file is reported and skipped.

This module only reads and writes files; rebuilding modules from a run is
:func:`stylization.runs.load_run`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import os
import random
import subprocess
import tempfile

import numpy as np
import torch

from stylization.errors import CheckpointError

log = logging.getLogger(__name__)
FORMAT = "stylization-train/1"


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, then rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# Classes weights_only=True may rebuild beyond tensors and primitives. argparse.Namespace is a plain
# attribute bag (no code runs when it is rebuilt); rosinality's train.py pickles its command line as
# one under "args", beside g / d / g_ema and the optimizers, and researchers fine-tune from such files.
SAFE_GLOBALS = (argparse.Namespace,)


def _safe_globals():
    """The allow-list for one load (``torch.serialization.safe_globals``, torch >= 2.5; older
    torch has no per-call list, and such files keep failing there with the usual error)."""
    allow = getattr(torch.serialization, "safe_globals", None)
    return allow(list(SAFE_GLOBALS)) if allow is not None else contextlib.nullcontext()


def load_file(path: str | os.PathLike, source_hint: str = "") -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that name the file.

    Besides tensors and primitives only :data:`SAFE_GLOBALS` are rebuilt (for this call only);
    any other pickled class or callable is refused. ``source_hint`` says where the file comes
    from, for the "missing" message.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError("checkpoint file not found" + (f"; {source_hint}" if source_hint else ""), path)
    try:
        with _safe_globals():
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot be loaded safely (truncated, not a PyTorch checkpoint, or it pickles code objects "
            f"that weights_only=True refuses): {first}",
            path,
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a dict at the top level, found {type(obj).__name__}", path)
    return obj


def checkpoint_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, "checkpoints", f"step_{step:09d}.pt")


def list_checkpoints(run_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step_*.pt")))


def load_latest(run_dir: str) -> tuple[str, dict] | None:
    """The newest training checkpoint in ``run_dir`` that loads, or None when there is none."""
    loaded = []
    for path in list_checkpoints(run_dir):
        try:
            ckpt = load_file(path)
        except CheckpointError as exc:
            log.warning("ignoring damaged checkpoint: %s", exc)
            continue
        if ckpt.get("format") == FORMAT:
            loaded.append((int(ckpt["step"]), path, ckpt))
    if not loaded:
        return None
    _, path, ckpt = max(loaded, key=lambda t: t[0])
    return path, ckpt


def prune_checkpoints(run_dir: str, keep: int) -> None:
    """Delete all but the ``keep`` newest step checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for path in list_checkpoints(run_dir)[:-keep]:
        os.remove(path)


def capture_rng(generator: torch.Generator | None = None) -> dict:
    """This process's RNG states as tensors and ints (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng(state: dict, generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def code_version() -> str:
    """``git describe`` of the source tree, or the package version outside a checkout."""
    from stylization import __version__

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"], capture_output=True, text=True,
                             timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return f"{__version__}+{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout
        return __version__
    return __version__


def resolve_checkpoint(path: str | os.PathLike, hint: str = "") -> tuple[str, dict]:
    """A checkpoint file, or a run directory (its newest checkpoint) -> (file, loaded dict)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = load_latest(path)
        if found is None:
            raise CheckpointError("run directory holds no loadable checkpoints/step_*.pt" + (f"; {hint}" if hint else ""),
                                  path)
        return found
    return path, load_file(path, hint)

