"""A progress line with rate and ETA on stderr (no dependency): redrawn on a terminal, periodic otherwise."""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, label: str = "files", every: float = 10.0):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.done = 0
        self.failed = 0
        self.start = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self.every = 0.2 if self.tty else every

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = _clock(eta) if rate > 0 else "--:--:--"
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{self.done}/{self.total} {self.label}{failed}  {rate:.2f} {self.label}/s  "
                f"elapsed {_clock(elapsed)}  ETA {eta_text}")

    def discount(self, n: int) -> None:
        """`n` of the files counted in `total` need no work (already computed): the ETA leaves them out."""
        self.total = max(self.total - n, self.done)

    def update(self, n: int = 1, failed: bool = False) -> None:
        self.done += n
        self.failed += int(failed)
        now = time.monotonic()
        if now - self._last >= self.every or self.done == self.total:
            self._last = now
            if self.tty:
                self.stream.write("\r" + self.line() + "\x1b[K")
            else:
                self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
