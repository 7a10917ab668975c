"""Training throughput per stage: steps/s, samples/s and the data loader's ceiling (issue 20).

    python scripts/bench_training.py [stages=[style_a,syncnet]] [steps=10] [warmup=2] [data.root=DIR]
                                     [device=auto|cpu|cuda] [workers=N]

Every stage of configs/stage/ runs with its CPU recipe: ``stage=S model=S_small`` (``style_e_small`` for
``style_e_cgan``), which brings configs/experiment/S_cpu.yaml. The engine builds it as ``python train.py``
does and its own loop runs ``warmup`` untimed, then ``steps`` timed optimisation steps (waiting for
data included; no checkpoint, validation or image grid: stylization/engine/throughput.py). Then the
same DataLoader (dataset, batch size, workers, collate) is drained with no model work: the loader's
ceiling. ``bound`` is "data" when that ceiling is under 1.5x the training samples/s, else "compute".
A sample is one item of the stage's dataset (``stage.batch_size`` a step).

Stages with two phases get a row per phase (pirender: warp / full; styletalk: pretrain / generator;
saas, saas_edit: codebook / generator; saas_pose: codebook / predictor); each phase's length is set so
that every timed step falls inside it. ``saas_pose`` and ``style_ref_generator`` read a previous
stage's run (``stage.codebook``, ``stage.mapping``): that stage is trained for 1 step first
(``python train.py``, on the CPU) in a temporary folder.

``data.root`` (default: none) is used for every stage; without it two small synthetic corpora are
made in a temporary folder with scripts/make_corpus.py (3 speakers, 1 clip each, 2 s, the ``cel``
style): 128 px for style_a and syncnet (the corpora their CPU runs in docs/results.md use), 64 px
(with phonemes, for styletalk) for the others. Each row runs in a fresh process. ``device=auto``
measures the CPU and, when present, CUDA; ``workers`` (default: the run's ``trainer.num_workers``)
sets the DataLoader workers of both measurements. The last line printed is one JSON object:
{"rows": [{stage, phase, device, precision, batch_size, steps_per_s, samples_per_s, loader_samples_per_s,
bound, ...}], "failed": {row: error}, "load_average": [1-minute load before, after], ...}; the exit
status is 1 when a row failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The CPU-sized model of a stage (it brings the stage's CPU recipe); the others use model=<stage>_small.
SMALL_MODEL = {"style_e_cgan": "style_e_small"}
# Two-phase stages: the option giving the first phase's length in steps, and the two phases' names.
PHASES = {"pirender": ("stage.warp_steps", "warp", "full"),
          "styletalk": ("stage.pretrain_steps", "pretrain", "generator"),
          "saas": ("stage.codebook_steps", "codebook", "generator"),
          "saas_edit": ("stage.codebook_steps", "codebook", "generator"),
          "saas_pose": ("stage.codebook_steps", "codebook", "predictor")}
# Stages that read a previous stage's run: the option naming it and the stage that makes it.
PREREQUISITES = {"saas_pose": ("stage.codebook", "saas_codebook"),
                 "style_ref_generator": ("stage.mapping", "style_ref_mapping")}
# The corpus frame size (pixels) of each stage's CPU runs in docs/results.md; 64 for the others.
RESOLUTION = {"style_a": 128, "syncnet": 128}
PHONEME_STAGES = ("styletalk",)  # stages whose items carry phonemes (corpus built with phonemes=true)
BOUND_MARGIN = 1.5


def all_stages() -> list[str]:
    return sorted(p.stem for p in (REPO / "configs" / "stage").glob("*.yaml"))


@dataclasses.dataclass
class DataOptions:
    root: Optional[str] = None  # a corpus for every stage (None: small synthetic corpora in a temporary folder)


@dataclasses.dataclass
class Options:
    stages: Optional[list[str]] = None  # None: every stage of configs/stage/
    steps: int = 10                     # timed optimisation steps (and loader batches) per row
    warmup: int = 2                     # untimed steps (and loader batches) before them
    data: DataOptions = dataclasses.field(default_factory=DataOptions)
    device: str = "auto"                # auto: the CPU, and CUDA when present | cpu | cuda
    workers: Optional[int] = None       # DataLoader workers (None: the run's trainer.num_workers)


def parse_options(argv: list[str]) -> Options:
    """``key=value`` overrides (Hydra's syntax) onto :class:`Options`; a wrong key or value exits naming it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    overrides = parser.parse_args(argv).overrides
    bad = [o for o in overrides if "=" not in o]
    if bad:
        parser.error(f"options are key=value, got {bad}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(Options), OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        parser.error(f"{key}: {str(exc).splitlines()[0]}" if key else str(exc).splitlines()[0])
    opts: Options = OmegaConf.to_object(cfg)
    known = all_stages()
    unknown = sorted(set(opts.stages or []) - set(known))
    if unknown:
        parser.error(f"stages: unknown {unknown}; known: {known}")
    if opts.steps < 1 or opts.warmup < 0:
        parser.error(f"steps must be >= 1 and warmup >= 0, got steps={opts.steps}, warmup={opts.warmup}")
    if opts.device not in ("auto", "cpu", "cuda"):
        parser.error(f"device must be auto, cpu or cuda, got {opts.device!r}")
    if opts.workers is not None and opts.workers < 0:
        parser.error(f"workers must be >= 0, got {opts.workers}")
    if opts.data.root is not None and not (Path(opts.data.root) / "index.jsonl").is_file():
        parser.error(f"data.root={opts.data.root} holds no index.jsonl (make one with scripts/make_corpus.py)")
    return opts


def make_corpus(out: Path, resolution: int, phonemes: bool) -> Path:
    """A small synthetic corpus through scripts/make_corpus.py's ``make`` (it prints a summary line)."""
    from hydra import compose, initialize_config_dir

    from make_corpus import make  # scripts/ is this script's folder

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="corpus", overrides=[
            f"out={out}", "speakers=3", "clips=1", "seconds=2.0", f"resolution={resolution}", "styles=[cel]",
            "art_references=2", f"phonemes={str(phonemes).lower()}"])
    make(cfg)
    return out


def compose_stage(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def train_prerequisite(stage: str, root: str, run_dir: Path) -> Path:
    """``python train.py stage=<stage> model=<stage>_small`` for 1 step on the CPU: a run a later stage reads."""
    command = [sys.executable, "train.py", f"stage={stage}", f"model={SMALL_MODEL.get(stage, stage + '_small')}",
               f"data.root={root}", f"trainer.run_dir={run_dir}", "trainer.max_steps=1", "trainer.max_minutes=null",
               "trainer.device=cpu", "trainer.num_workers=0", "data.val_split=null"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the prerequisite run {' '.join(command[1:])} failed:\n{done.stderr[-2000:]}")
    return run_dir


def rows_of(stage: str, steps: int, warmup: int) -> list[tuple[str, list[str]]]:
    """(phase, overrides) per row of a stage: one row, or one per phase of a two-phase stage."""
    if stage not in PHASES:
        return [("", [])]
    key, first, second = PHASES[stage]
    # the first phase outlasts every timed step; the second starts at step 0
    return [(first, [f"{key}={warmup + steps + 1}"]), (second, [f"{key}=0"])]


def bench_row(stage: str, overrides: list[str], opts: Options, device: str) -> dict:
    """One row's figures (:func:`stylization.engine.throughput.measure` and the bound), in this process."""
    from stylization.allocator import tune_allocator
    from stylization.engine.throughput import bound, build_trainer, measure

    tune_allocator()  # as the entry points do
    cfg = compose_stage([f"stage={stage}", f"model={SMALL_MODEL.get(stage, stage + '_small')}", *overrides,
                         "trainer.resume=none", "trainer.max_steps=0", "trainer.max_minutes=null",
                         f"trainer.device={device}", "trainer.image_every_steps=0",
                         *([] if opts.workers is None else [f"trainer.num_workers={opts.workers}"])])
    result = measure(build_trainer(cfg), opts.steps, opts.warmup)
    result["bound"] = bound(result["samples_per_s"], result["loader_samples_per_s"], BOUND_MARGIN)
    return result


def _row_process(conn, *args) -> None:
    # A spawned child inherits "spawn" as its default start method; train.py's DataLoader workers fork
    # (Linux's default; the datasets' caches are not picklable).
    multiprocessing.set_start_method("fork", force=True)
    try:
        conn.send(("ok", bench_row(*args)))
    except Exception as exc:  # reported by the parent, with the child's traceback
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def bench_row_alone(stage: str, overrides: list[str], opts: Options, device: str) -> dict:
    """:func:`bench_row` in a fresh (spawned) process, as ``python train.py`` runs: nothing carries over from
    one row to the next (threads, memory, CUDA state, DataLoader workers)."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_row_process, args=(sender, stage, overrides, opts, device))
    process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        status, payload = "error", "the measuring process died"
    process.join()
    if status != "ok":
        raise RuntimeError(f"{payload} (exit code {process.exitcode})")
    return payload


class Inputs:
    """What the rows read, made on first use in ``folder``: the corpora (unless ``data.root`` is given) and
    the runs of :data:`PREREQUISITES`."""

    def __init__(self, folder: Path, root: str | None, stages: list[str]):
        self.folder, self.root, self.stages = folder, root, stages
        self.corpora: dict[int, str] = {}
        self.runs: dict[str, str] = {}

    def corpus(self, stage: str) -> str:
        if self.root is not None:
            return self.root
        size = RESOLUTION.get(stage, 64)
        if size not in self.corpora:
            phonemes = any(RESOLUTION.get(s, 64) == size for s in self.stages if s in PHONEME_STAGES)
            print(f"making a {size} px synthetic corpus{' with phonemes' if phonemes else ''} ...", flush=True)
            self.corpora[size] = str(make_corpus(self.folder / f"corpus_{size}", size, phonemes))
        return self.corpora[size]

    def overrides(self, stage: str) -> list[str]:
        root = self.corpus(stage)
        if stage not in PREREQUISITES:
            return [f"data.root={root}"]
        option, before = PREREQUISITES[stage]
        if before not in self.runs:
            print(f"{stage} reads a {before} run: training one for 1 step ...", flush=True)
            self.runs[before] = str(train_prerequisite(before, root, self.folder / "prerequisites" / before))
        return [f"data.root={root}", f"{option}={self.runs[before]}"]


def main(argv: list[str]) -> int:
    import torch

    opts = parse_options(argv)
    stages = list(opts.stages or all_stages())
    if opts.device == "cuda" and not torch.cuda.is_available():
        print("error: device=cuda but no CUDA device is visible; use device=cpu or auto", file=sys.stderr)
        return 2
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if opts.device == "auto" else [opts.device]
    rows, failed = [], {}
    load_before = os.getloadavg()[0]  # other processes on the cores make every figure lower
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        inputs = Inputs(Path(tmp), opts.data.root, stages)
        for stage in stages:
            for phase, phase_overrides in rows_of(stage, opts.steps, opts.warmup):
                for device in devices:
                    key = f"{stage}{'/' + phase if phase else ''}@{device}"
                    run_dir = Path(tmp) / "runs" / key.replace("/", "_")
                    try:
                        overrides = [*inputs.overrides(stage), *phase_overrides, f"trainer.run_dir={run_dir}"]
                        result = bench_row_alone(stage, overrides, opts, device)
                    except Exception as exc:  # one broken stage must not hide the others' figures
                        print(exc, file=sys.stderr)
                        failed[key] = str(exc).splitlines()[0]
                        print(f"{key}: failed ({failed[key]})", flush=True)
                        continue
                    rows.append({"stage": stage, "phase": phase or None, **result,
                                 "corpus": "given" if opts.data.root else f"synthetic, {RESOLUTION.get(stage, 64)} px"})
                    print(f"{key}: batch {result['batch_size']}, {result['steps_per_s']:.3g} steps/s, "
                          f"{result['samples_per_s']:.3g} samples/s; loader {result['loader_samples_per_s']:.3g} "
                          f"samples/s ({result['bound']}-bound; {result['precision']}, {result['workers']} workers, "
                          f"{result['threads']} threads)", flush=True)
    for row in rows:
        for k in ("step_seconds", "steps_per_s", "samples_per_s", "loader_samples_per_s"):
            row[k] = round(row[k], 4)
    print(json.dumps({"steps": opts.steps, "warmup": opts.warmup, "bound_margin": BOUND_MARGIN,
                      "torch": torch.__version__, "cpus": len(os.sched_getaffinity(0)),
                      "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                      "rows": rows, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
