"""Where plugins' messages go: the run's log (the console, a caller's logger), never straight to stderr.

A host or backend calls `say(...)` (re-exported by the api); the pipeline points it at the run's log for the
duration of the run.  Outside a run (a plugin's own tool, a test) it goes to stderr.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

_LOG: ContextVar[Callable[[str], None] | None] = ContextVar("deepfaune_run_log", default=None)


def say(message: str) -> None:
    """One line for the person running the command (a warning starts with "warning: ")."""
    log = _LOG.get()
    if log is None:
        print(message, file=sys.stderr)
    else:
        log(message)


@contextmanager
def host_log(log: Callable[[str], None]) -> Iterator[None]:
    """`say` goes to `log` inside the block."""
    token = _LOG.set(log)
    try:
        yield
    finally:
        _LOG.reset(token)
