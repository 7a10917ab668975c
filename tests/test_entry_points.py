"""train.py from the command line: config printing, a real short run, and clean errors."""

import os
import subprocess
import sys

import pytest
from conftest import REPO, tiny_audio2exp_overrides

STAGES = sorted(p.stem for p in (REPO / "configs" / "stage").glob("*.yaml"))


def run(args, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def test_cfg_job_prints_a_stage_and_every_stage_composes():
    """``--cfg job`` through the real command line (one stage: each subprocess costs seconds); every
    stage file is composed and built in-process by tests/test_configs.py, which must list them all."""
    from test_configs import MODELS

    assert sorted(MODELS) == STAGES
    out = run(["train.py", "--cfg", "job", "stage=saas_pose"])
    assert out.returncode == 0, out.stderr
    assert "name: saas_pose" in out.stdout and "model:" in out.stdout and "trainer:" in out.stdout


def test_a_short_cli_run_fills_its_run_directory(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    out = run(["train.py", *tiny_audio2exp_overrides(tiny_corpus, run_dir, max_steps=4, checkpoint_every_steps=100,
                                                       num_workers=1)])
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run_dir / "config.yaml").is_file() and "window_frames: 16" in (run_dir / "config.yaml").read_text()
    assert "finished at step 4" in (run_dir / "train.log").read_text()
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step_000000004.pt"]
    assert any(p.name.startswith("events.out.tfevents") for p in (run_dir / "tb").iterdir())
    # resume=auto: asking for 6 steps continues from 4
    out = run(["train.py", *tiny_audio2exp_overrides(tiny_corpus, run_dir, max_steps=6, checkpoint_every_steps=100)])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from" in (run_dir / "train.log").read_text()
    assert (run_dir / "checkpoints" / "step_000000006.pt").is_file()


def test_time_budget_stops_and_saves(tiny_corpus, tmp_path):
    run_dir = tmp_path / "budget"
    out = run(["train.py", *tiny_audio2exp_overrides(tiny_corpus, run_dir, max_steps="null", max_minutes=0.002)])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trainer.max_minutes=0.002 reached" in (run_dir / "train.log").read_text()
    assert len(list((run_dir / "checkpoints").iterdir())) >= 1


@pytest.mark.parametrize("args, code, message", [
    (["stage=audio2exp"], 2, "data.root is required"),
    (["stage=audio2exp", "data.root=/no/such/corpus"], 1, "no index.jsonl"),
    (["stage=audio2exp", "data.root=/tmp", "trainer.precision=fp16", "trainer.device=cpu"], 2, "trainer.precision"),
])
def test_expected_mistakes_give_one_line_and_no_traceback(args, code, message, tmp_path):
    out = run(["train.py", *args, f"trainer.run_dir={tmp_path / 'r'}"])
    assert out.returncode == code
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]


def test_console_logging_puts_warnings_on_stderr():
    """configs/hydra/job_logging/console.yaml (every entry point's logging): info on stdout only,
    warnings and errors on stderr only."""
    code = ("import logging.config, yaml; "
            "logging.config.dictConfig(yaml.safe_load(open('configs/hydra/job_logging/console.yaml'))); "
            "log = logging.getLogger('stylization.x'); log.info('progress note'); "
            "log.warning('3 faces found; using the largest'); log.error('it broke')")
    out = run(["-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["progress note"]
    assert out.stderr.splitlines() == ["WARNING: 3 faces found; using the largest", "ERROR: it broke"]
    for config in ("train", "infer", "corpus", "eval_motion", "eval_render", "eval_pose"):
        assert "override hydra/job_logging: console" in (REPO / "configs" / f"{config}.yaml").read_text()
