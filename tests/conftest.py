"""Shared fixtures: a tiny corpus in the processed-clip format, written by hand.

Three speakers (two train, one test), neutral and happy, 48 frames at 32x32 per clip.
The mouth follows the loudness of a tone-burst "speech" track so the audio and the
coefficients are related, as in real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from stylization.data.audio import SAMPLE_RATE, SAMPLES_PER_FRAME
from stylization.data.corpus import write_clip, write_index
from stylization.data.face_model import stand_in_face_model

REPO = Path(__file__).resolve().parents[1]
# Parameter-name/shape lists of the official checkpoints (copied from the project's reference
# facts so that a fresh clone runs the layout and checkpoint contract tests too).
MANIFESTS = Path(__file__).resolve().parent / "manifests"
FRAME_SIZE = 32


def tiny_clip_arrays(rng: np.random.Generator, n_frames: int, identity: np.ndarray, smile: float):
    """Coefficients [T, 260], landmarks [T, 68, 2] (32 px), audio and frames of one clip."""
    t = np.arange(n_frames * SAMPLES_PER_FRAME) / SAMPLE_RATE
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * t + rng.uniform(0, 6)), 0, None)
    audio = (0.4 * envelope * np.sin(2 * np.pi * rng.uniform(150, 250) * t)).astype(np.float32)
    per_frame = envelope.reshape(n_frames, SAMPLES_PER_FRAME).mean(1)
    coeffs = np.zeros((n_frames, 260), np.float32)
    coeffs[:, 0:80] = identity
    coeffs[:, 80] = 1.2 * per_frame  # jaw_open follows the sound
    coeffs[:, 81] = smile  # lip_corner_pull
    coeffs[:, 82:144] = 0.05 * rng.normal(size=(n_frames, 62))
    coeffs[:, 224:227] = 0.05 * np.sin(np.arange(n_frames)[:, None] / 7.0 + rng.uniform(0, 6, 3))
    coeffs[:, 257] = 1.0
    fm = stand_in_face_model()
    landmarks = fm.landmarks_from_coeffs(torch.from_numpy(coeffs), FRAME_SIZE).numpy()
    frames = np.zeros((n_frames, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    frames[..., 0] = (80 + 100 * per_frame)[:, None, None].astype(np.uint8)
    return coeffs, landmarks, audio, frames


def make_tiny_corpus(root: Path, n_frames: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    records = []
    for speaker, split in (("spk_a", "train"), ("spk_b", "train"), ("spk_c", "test")):
        identity = 0.5 * rng.normal(size=80)
        for emotion, smile in (("neutral", 0.0), ("happy", 0.8)):
            coeffs, lm, audio, frames = tiny_clip_arrays(rng, n_frames, identity, smile)
            records.append(write_clip(root, f"{speaker}_{emotion}", speaker, emotion, 1 if smile else 0, split,
                                      [f"A person speaks, {emotion}.", f"Someone talks looking {emotion}."],
                                      coeffs, lm, audio, frames))
    write_index(root, records)
    return root


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A read-only tiny corpus shared by the session (copy it before damaging it)."""
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus"))


def pytest_configure(config):
    """The suite runs with the allocator setting the entry points use (stylization/allocator.py)."""
    from stylization.allocator import tune_allocator

    tune_allocator()


@pytest.fixture(autouse=True)
def _quiet_threads():
    """2 torch threads, or the cores' share of this process when pytest-xdist runs several."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))


def compose_train(overrides: list[str]):
    """The real configs/train.yaml composed with ``overrides`` (as the command line would)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def train_as_documented(command: list[str], root, run_dir: Path, expected: dict, steps: int = 2,
                        validate: bool = True):
    """Run ``python train.py <command> data.root=ROOT trainer.run_dir=RUN trainer.max_steps=STEPS`` as a
    user would (a subprocess of the real entry point), check that the run's saved config.yaml has the
    ``expected`` {dotted key: value} and that its newest checkpoint is at ``steps``; returns the config.
    ``validate=False`` adds ``data.val_split=null`` (the final validation costs seconds)."""
    import subprocess
    import sys

    from omegaconf import OmegaConf

    args = [sys.executable, "train.py", *command, f"data.root={root}", f"trainer.run_dir={run_dir}",
            f"trainer.max_steps={steps}", *([] if validate else ["data.val_split=null"])]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
    assert {key: OmegaConf.select(cfg, key) for key in expected} == expected
    from stylization.runs import load_run

    assert load_run(run_dir).step == steps
    return cfg


def tiny_audio2exp_overrides(root, run_dir, **trainer) -> list[str]:
    """A CPU-sized audio2exp run on the tiny corpus (tests override trainer.* further)."""
    base = {"max_steps": 6, "num_workers": 0, "log_every_steps": 2, "val_every_steps": 3, "val_batches": 2,
            "image_every_steps": 3, "checkpoint_every_steps": 2, "device": "cpu", "ema_decay": 0.9}
    base.update(trainer)
    return ["stage=audio2exp", "model=audio2exp_small", f"data.root={root}", "stage.batch_size=4",
            "stage.window_frames=16", f"trainer.run_dir={run_dir}"] + [f"trainer.{k}={v}" for k, v in base.items()]


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus: 3 speakers (1 test) x 8 emotions x 3 levels, 64 px, two art styles
    (no phonemes: their alignment would double its build time; tests/test_phonemes.py makes its own)."""
    from stylization.data.synthetic.build import CorpusSpec, build_corpus

    root = tmp_path_factory.mktemp("synthetic") / "corpus"
    build_corpus(CorpusSpec(out=str(root), speakers=3, clips=1, seconds=2.0, resolution=64, workers=2,
                            styles=("cel", "pixel_art"), art_references=2, phonemes=False))
    return root


def read_manifest(name: str) -> list[tuple[str, list[int]]]:
    """The parameter manifest ``tests/manifests/<name>`` (name, shape, dtype per line) as [(name, shape)]."""
    rows = (MANIFESTS / name).read_text().strip().splitlines()[1:]
    return [(name, [int(d) for d in shape.strip("[]").split(",") if d]) for name, shape, _ in
            (r.split("\t") for r in rows)]


def write_official(path: Path, manifest, entry: str | None, drop: str | None = None, extra: dict | None = None,
                   **top_level) -> None:
    """A checkpoint in an official structure, {entry: state_dict, **top_level}, random tensors of
    the manifest's shapes (``entry`` None writes the plain state dict)."""
    g = torch.Generator().manual_seed(0)
    state = {name: (torch.randn(shape, generator=g) if shape else torch.tensor(0)) for name, shape in manifest
             if name != drop}
    state.update(extra or {})
    torch.save(state if entry is None else {entry: state, **top_level}, path)


def check_checkpoint(kind: str, path: Path):
    """Run scripts/check_checkpoint.py as a user would."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "scripts/check_checkpoint.py", "--kind", kind, str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
