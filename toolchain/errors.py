"""Expected faults: one clear line for a person, a non-zero exit, no traceback.

Every stage raises `UserError` for a bad input (file, config, model, camera, board, docker).
The CLI prints `error: <message>` and exits with `exit_code`; anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A fault in what the user gave us. The message names the thing and the fix."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(UserError):
    """A bad key, type or value in the YAML config."""


class DataError(UserError):
    """A dataset file that is missing, damaged or not in Kaggle Sign Language MNIST format."""


class NeedsImage(UserError):
    """A stage needs a tool only the Vitis AI image has, and this process is not in it."""
