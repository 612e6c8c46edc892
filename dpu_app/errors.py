"""Expected faults and console lines of the app.

An `AppError` is a fault in what the user gave (file, model, camera, flag): the CLI prints it as
one line `error: ...` and exits with status 2, without a traceback. The toolchain (which imports
this package, never the other way round) treats it the same way.
"""
from __future__ import annotations

import sys


class AppError(Exception):
    """An expected fault: printed as one line `error: ...`, exit status 2, no traceback."""

    exit_code = 2


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
