"""Errors for expected mistakes: bad input files, bad options, missing checkpoints.

Entry points catch :class:`UserError`, print its one-line message to stderr and exit
with ``exit_code`` and no traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class UserError(Exception):
    """A mistake the user can fix; the message names the file or option and the problem."""

    exit_code = 1

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.message = message  # without the path: what summaries group by
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(UserError):
    """A configuration value that is missing, out of range or inconsistent (usage error)."""

    exit_code = 2


class DataError(UserError):
    """A data file that is missing, unreadable, or has the wrong shape or content."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, not a checkpoint, or does not match the model."""
