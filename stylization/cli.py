"""Entry-point helpers: expected mistakes become one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Callable

from omegaconf.errors import MissingMandatoryValue

from stylization.errors import UserError


def run_cli(task: Callable[[], object]) -> None:
    """Run ``task``; a :class:`UserError` or a missing required option exits without a traceback."""
    try:
        task()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except MissingMandatoryValue as exc:
        key = exc.full_key or "an option"
        print(f"error: {key} is required; pass {key}=... on the command line", file=sys.stderr)
        sys.exit(2)
