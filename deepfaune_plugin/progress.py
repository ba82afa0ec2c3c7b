"""Progress lines with rate and ETA on stderr (no dependency): redrawn on a terminal, periodic otherwise."""
from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """H:MM:SS."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StatusLine:
    """One line of status on a stream: redrawn in place on a terminal (every 0.2 s at most), else printed
    every `every` seconds; subclasses say what the line is."""

    def __init__(self, stream: TextIO | None = None, every: float = 10.0):
        self._stream = stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.2 if self.tty else every
        self._last = 0.0

    @property
    def stream(self) -> TextIO:
        """The stream given, else sys.stderr as it is now: while a decoder's messages are being caught
        (engine/quiet.py), that is the terminal, not the descriptor being caught."""
        return self._stream if self._stream is not None else sys.stderr

    def line(self) -> str:
        raise NotImplementedError

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            self.stream.write("\r" + self.line() + "\x1b[K" if self.tty else self.line() + "\n")
            self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Progress(StatusLine):
    """Files done of a total, with failures, rate and ETA."""

    def __init__(self, total: int, stream: TextIO | None = None, label: str = "files", every: float = 10.0):
        super().__init__(stream, every)
        self.total = total
        self.label = label
        self.done = 0
        self.failed = 0
        self.start = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = clock(eta) if rate > 0 else "--:--:--"
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{self.done}/{self.total} {self.label}{failed}  {rate:.2f} {self.label}/s  "
                f"elapsed {clock(elapsed)}  ETA {eta_text}")

    def discount(self, n: int) -> None:
        """`n` of the files counted in `total` need no work (already computed): the ETA leaves them out."""
        self.total = max(self.total - n, self.done)

    def update(self, n: int = 1, failed: bool = False) -> None:
        self.done += n
        self.failed += int(failed)
        self.draw(force=self.done == self.total)

    def close(self) -> None:
        self.end()
