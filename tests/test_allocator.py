"""The allocator setting every entry point applies (stylization/allocator.py)."""

import os
import platform
import subprocess
import sys

import pytest

CODE = "from stylization.allocator import tune_allocator; print(tune_allocator(), tune_allocator())"


def _run(env_value):
    env = dict(os.environ)
    env.pop("STYLIZATION_MALLOC", None)
    if env_value is not None:
        env["STYLIZATION_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_accepts_the_setting_once_and_the_opt_out_keeps_the_default():
    assert _run(None) == ["True", "True"]  # mallopt returned 1 for both parameters; the second call is a no-op
    assert _run("default") == ["False", "False"]


def test_run_cli_applies_it(monkeypatch):
    from stylization import cli

    calls = []
    monkeypatch.setattr(cli, "tune_allocator", lambda: calls.append(1))
    cli.run_cli(lambda: None)
    assert calls == [1]
