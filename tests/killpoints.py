"""kill -9 at every file-system step of a writer: fork, count the steps, SIGKILL the child before step N.

A step is any call that can change (or read) a file: open, write, fsync, rename, removal, link...  The
count starts when the gated function (the writer under test) is entered, so the run's other files do not
move the points.  POSIX only (fork); `FORK_ONLY` skips elsewhere.
"""
from __future__ import annotations

import builtins
import os
import signal
import sys
from typing import Callable

import pytest

OS_STEPS = ("open", "replace", "rename", "unlink", "fsync", "write", "mkdir", "rmdir", "utime", "chmod", "link",
            "symlink", "ftruncate", "sendfile")  # reads (stat...) change nothing: no new points
FORK_ONLY = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                               reason="the kill loop forks the test process (POSIX)")


def _instrument(kill_at: int | None, gate_owner: object, gate_name: str) -> list[int]:
    steps = [0]
    counting = [False]

    def wrap(owner, name):
        real = getattr(owner, name)

        def step(*args, **kwargs):
            if counting[0]:
                steps[0] += 1
                if kill_at is not None and steps[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        setattr(owner, name, step)

    for name in OS_STEPS:
        if hasattr(os, name):
            wrap(os, name)
    wrap(builtins, "open")
    real_gate = getattr(gate_owner, gate_name)

    def gated(*args, **kwargs):
        counting[0] = True
        try:
            return real_gate(*args, **kwargs)
        finally:
            counting[0] = False

    setattr(gate_owner, gate_name, gated)
    return steps


def fork_run(action: Callable[[], None], gate_owner: object, gate_name: str, kill_at: int | None) -> tuple[bool, int]:
    """Run `action` in a forked child, killed before step `kill_at` of `gate_owner.gate_name`.

    Returns (killed, steps counted: the total when not killed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # never return into pytest from the child
        code = 1
        try:
            os.close(read_end)
            steps = _instrument(kill_at, gate_owner, gate_name)
            action()
            os.write(write_end, str(steps[0]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        reported = fh.read()
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if not killed and os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError(f"the child failed (status {status}) with kill_at={kill_at}")
    return killed, int(reported) if reported else 0
