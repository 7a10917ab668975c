"""Entry-point helpers: expected mistakes become one line on stderr and a non-zero exit; free
text on the command line; the console logging split (information on stdout, warnings on stderr).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Callable, Sequence

from omegaconf.errors import MissingMandatoryValue

from stylization.allocator import tune_allocator
from stylization.errors import UserError


def run_cli(task: Callable[[], object]) -> None:
    """Run ``task``; a :class:`UserError` or a missing required option exits without a traceback.

    glibc's allocator is tuned first (:func:`stylization.allocator.tune_allocator`)."""
    tune_allocator()
    try:
        task()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except MissingMandatoryValue as exc:
        key = exc.full_key or "an option"
        print(f"error: {key} is required; pass {key}=... on the command line", file=sys.stderr)
        sys.exit(2)


class BelowWarning(logging.Filter):
    """Passes records under WARNING: the stdout handler of configs/hydra/job_logging/console.yaml
    (warnings and errors go to its stderr handler, where a user who redirects stdout still sees them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def literal_override(key: str, value: str) -> str:
    """``key=value`` as a Hydra override whose value arrives verbatim.

    Hydra's override parser splits on commas and reads ``=``, brackets and braces; OmegaConf then
    resolves ``${...}``. So the value is single-quoted for Hydra (a quote, and backslashes before a
    quote or the closing quote, escaped as its grammar says) and ``${`` escaped for OmegaConf
    (``\\${`` is a literal ``${``; backslashes right before it are doubled).
    """
    value = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)
    return f"{key}='{value}'"


def free_text_argv(argv: Sequence[str], keys: Sequence[str]) -> list[str]:
    """``argv`` with each ``key=...`` of ``keys`` rewritten by :func:`literal_override`, so free
    text works as typed (``text="The person is angry, frowning"``), before Hydra parses the line.

    One pair of enclosing quotes (Hydra's own quoting, e.g. ``text="'...'"``) is removed first,
    so commands written for Hydra keep their meaning.
    """
    out = [argv[0]] if argv else []
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if sep and key in keys:
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            arg = literal_override(key, value)
        out.append(arg)
    return out
