"""What the C decoders say goes into the file's warning, not onto the user's terminal.

libjpeg (inside OpenCV) and FFmpeg (OpenCV's and PyAV's video decoder) print their complaints
("Corrupt JPEG data: premature end of data segment", "[h264 @ 0x55d...] error while decoding MB")
straight to file descriptor 2, with no file name and no way to turn them off from Python.  Around a
decode, `decoder_messages` points descriptor 2 at a private file and hands back what was written
there, so that the caller can attach it to the file it was decoding.

Python's own stderr (the progress line, warnings, from any thread) must not be caught on the way:
while a capture is on, `sys.stderr` is swapped for a stream on a copy of the real descriptor 2, so
those lines still reach the terminal at once.  Captures are serialised (descriptor 2 is one per
process); decoding is a small part of a file's time, so the lock costs little.
"""
from __future__ import annotations

import io
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import Iterator

_LOCK = threading.Lock()
_state: dict[object, object] = {}
#: FFmpeg's prefix names the codec and an address that changes every run: "[mpeg4 @ 0x55d0c3a4b2c0] ".
_FFMPEG_PREFIX = re.compile(r"^\[([^\]@]+?) @ 0x[0-9a-fA-F]+\] ")
#: OpenCV's own log prefix: "[ WARN:0@0.053] global grfmt_png.cpp:855 read_chunk ".
_OPENCV_PREFIX = re.compile(r"^\[\s*(?:WARN|ERROR|INFO|DEBUG|FATAL)[^\]]*\]\s+(?:global\s+)?\S+:\d+\s+\S+\s+")
#: At most this many distinct messages per file (a damaged video repeats a few of them hundreds of times).
MOST_MESSAGES = 3


def _python_stderr() -> io.TextIOBase | None:
    """A text stream on a copy of descriptor 2, for Python's writes during a capture.

    Made once per place descriptor 2 points to (a terminal, a log file; a test harness moves it) and
    never closed: another thread may still be writing through it when a capture ends.
    """
    try:
        st = os.fstat(2)
        key = ("python", st.st_dev, st.st_ino)
        if key not in _state:
            encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
            _state[key] = io.TextIOWrapper(io.FileIO(os.dup(2), "w"), encoding=encoding, errors="backslashreplace",
                                           line_buffering=True, write_through=True)
    except OSError:
        return None
    return _state[key]  # type: ignore[return-value]


def _sink() -> int:
    """The private file descriptor 2 points at during a capture (one per process, emptied each time)."""
    if "sink" not in _state:
        fd, name = tempfile.mkstemp(prefix="deepfaune-stderr-")
        os.unlink(name)
        _state["sink"] = fd
    return _state["sink"]  # type: ignore[return-value]


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a test's capture, an IDE's console: not descriptor 2
        return False


def tidy(text: str) -> list[str]:
    """The distinct messages of `text`, in order: FFmpeg's "[codec @ 0x...] " becomes "codec: ", OpenCV's
    "[ WARN:0@0.05] global file.cpp:855 function " goes."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            line = _OPENCV_PREFIX.sub("", _FFMPEG_PREFIX.sub(lambda m: f"{m.group(1).strip()}: ", line))
            if line not in out:
                out.append(line)
    return out


def summarise(messages: list[str], most: int = MOST_MESSAGES) -> str:
    """One warning for a file: the decoder's first `most` distinct messages."""
    more = f" (+{len(messages) - most} more)" if len(messages) > most else ""
    return "decoder said: " + "; ".join(messages[:most]) + more


@contextmanager
def decoder_messages() -> Iterator[list[str]]:
    """Capture what C code writes to descriptor 2 inside the block; the list is filled on leaving it."""
    messages: list[str] = []
    with _LOCK:
        try:
            sink, saved = _sink(), os.dup(2)
        except OSError:  # no descriptor to spare: decode anyway, the messages then show as before
            yield messages
            return
        python_stderr = _python_stderr() if _writes_to_fd2(sys.stderr) else None
        previous = sys.stderr
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        os.ftruncate(sink, 0)
        os.lseek(sink, 0, os.SEEK_SET)
        os.dup2(sink, 2)
        if python_stderr is not None:
            sys.stderr = python_stderr
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if python_stderr is not None and sys.stderr is python_stderr:
                sys.stderr = previous
            size = os.lseek(sink, 0, os.SEEK_END)
            os.lseek(sink, 0, os.SEEK_SET)
            data = os.read(sink, min(size, 1 << 16)) if size else b""
            messages.extend(tidy(data.decode("utf-8", errors="replace")))
