"""scripts/bench_training.py: steps/s, samples/s and the loader's ceiling per stage, through the engine."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import REPO

from stylization.engine.throughput import bound


def bench_script():
    if "bench_training" not in sys.modules:  # its dataclasses look their module up there
        spec = importlib.util.spec_from_file_location("bench_training", REPO / "scripts" / "bench_training.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["bench_training"]


def test_bound_is_data_when_the_loader_is_not_clearly_faster():
    assert bound(10.0, 14.9) == "data"
    assert bound(10.0, 15.0) == "compute"
    assert bound(10.0, 8.0) == "data"


def test_phases_and_options():
    script = bench_script()
    assert script.rows_of("style_a", 5, 2) == [("", [])]
    # the first phase outlasts warm-up and timed steps; the second starts at once
    assert script.rows_of("pirender", 5, 2) == [("warp", ["stage.warp_steps=8"]), ("full", ["stage.warp_steps=0"])]
    assert set(script.PHASES) | set(script.PREREQUISITES) | set(script.SMALL_MODEL) <= set(script.all_stages())
    opts = script.parse_options(["stages=[syncnet]", "steps=3", "workers=0"])
    assert (opts.stages, opts.steps, opts.warmup, opts.workers, opts.device) == (["syncnet"], 3, 2, 0, "auto")


@pytest.mark.parametrize("argv, key", [(["stages=[style_b]"], "stages"), (["steps=0"], "steps"),
                                       (["device=tpu"], "device"), (["step=3"], "step"),
                                       (["data.root=/nonexistent"], "data.root")])
def test_bad_options_exit_naming_the_key(argv, key, capsys):
    with pytest.raises(SystemExit):
        bench_script().parse_options(argv)
    assert key in capsys.readouterr().err


@pytest.mark.slow
def test_two_stages_report_throughput_and_the_loader_ceiling(synthetic_corpus):
    done = subprocess.run([sys.executable, "scripts/bench_training.py", "stages=[audio2exp,style_ref_motion]",
                           "steps=2", "warmup=1", "workers=1", "device=cpu", f"data.root={synthetic_corpus}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert [r["stage"] for r in result["rows"]] == ["audio2exp", "style_ref_motion"]
    for row in result["rows"]:
        assert row["steps_per_s"] > 0 and row["samples_per_s"] > 0 and row["loader_samples_per_s"] > 0
        assert row["samples_per_s"] == pytest.approx(row["batch_size"] * row["steps_per_s"], rel=1e-3)
        assert (row["device"], row["precision"], row["workers"]) == ("cpu", "fp32", 1)
        assert row["bound"] == bound(row["samples_per_s"], row["loader_samples_per_s"])
