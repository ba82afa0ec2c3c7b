"""Resumable HTTP download of the official weights (1.2 GB over a university web server).

A dropped connection resumes with an HTTP range request instead of starting over; the bytes
collect in `<name>.part` and only a complete file of the expected size is renamed to its final
name, so a half-downloaded checkpoint is never mistaken for a whole one. `<name>.source.json` notes the
URL the bytes come from: a file or part fetched from another URL (a new `--base-url`, a card that moved)
is fetched again, never resumed with another file's bytes.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TextIO

from ..untrusted import parse_json
from ..errors import DeepfauneError
from .installed import sha256_file
from ..progress import StatusLine, clock

CHUNK = 1 << 20
USER_AGENT = "deepfaune-plugin (model installer)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIABLE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(DeepfauneError):
    """A download that cannot complete, or whose bytes are not the expected file."""


def part_path(dest: Path) -> Path:
    """Where the bytes of `dest` collect until the file is complete."""
    return dest.with_name(dest.name + ".part")


def note_path(dest: Path) -> Path:
    """The note of the URL `dest` (and its part) is fetched from."""
    return dest.with_name(dest.name + ".source.json")


def _noted_url(dest: Path) -> str | None:
    try:
        note = parse_json(note_path(dest).read_text(encoding="utf-8"), str(note_path(dest)))
    except (OSError, ValueError):
        return None
    return note.get("url") if isinstance(note, dict) else None


def _from_elsewhere(dest: Path, url: str) -> bool:
    """True when the note says `dest`'s bytes came from another URL (no note: files of an older version)."""
    noted = _noted_url(dest)
    return noted is not None and noted != url


class ByteProgress(StatusLine):
    """`name  312.0/1212.6 MB  41.3 MB/s  ETA 0:00:21` on a stream; redrawn on a terminal."""

    def __init__(self, name: str, total: int | None, done: int = 0, stream: TextIO | None = None,
                 every: float = 10.0):
        super().__init__(stream, every)
        self.name, self.total, self.done = name, total, done
        self._start_bytes, self._start = done, time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        rate = (self.done - self._start_bytes) / elapsed if elapsed > 0 else 0.0
        mb = 1e6
        total = f"/{self.total / mb:.1f}" if self.total else ""
        eta = f"  ETA {clock((self.total - self.done) / rate)}" if self.total and rate > 0 else ""
        return f"{self.name}  {self.done / mb:.1f}{total} MB  {rate / mb:.1f} MB/s{eta}"

    def update(self, n: int, force: bool = False) -> None:
        self.done += n
        self.draw(force)

    def close(self) -> None:
        self.draw(force=True)
        self.end()


def _total_from(response, offset: int) -> int | None:
    """The full file size the server reports, from Content-Range (206) or Content-Length (200)."""
    if response.status == 206:
        m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not m:
            raise DownloadError(f"the server answered a range request without a valid Content-Range "
                                f"({response.headers.get('Content-Range')!r})")
        start, _end, total = m.groups()
        if int(start) != offset:
            raise DownloadError(f"asked for bytes from {offset}, the server sent from {start}")
        return None if total == "*" else int(total)
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _finish(part: Path, dest: Path, expected_size: int | None, sha256: str | None) -> Path:
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise DownloadError(f"{dest.name}: downloaded {size} bytes, expected {expected_size}; removed it")
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256.lower():
            part.unlink()
            raise DownloadError(f"{dest.name}: sha256 {actual} does not match the expected {sha256}; removed it")
    with part.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(part, dest)
    return dest


def download(url: str, dest: Path | str, *, expected_size: int | None = None, sha256: str | None = None,
             retries: int = 5, timeout: float = 60.0, progress: bool | TextIO = True,
             sleep: Callable[[float], None] = time.sleep) -> Path:
    """Fetch `url` to `dest`, resuming `dest.part` left by an earlier attempt.

    The size the server announces must equal `expected_size` when given (a model card's size): a
    different size means a different or damaged file, and it is refused before any byte is kept.
    `retries` bounds consecutive attempts that bring no new byte; progress goes to stderr.
    """
    dest = Path(dest)
    moved = _from_elsewhere(dest, url)
    if not moved and dest.is_file() and (expected_size is None or dest.stat().st_size == expected_size):
        if sha256 is None or sha256_file(dest) == sha256.lower():
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    if moved:
        part.unlink(missing_ok=True)  # bytes of another file: never resumed
    stream = progress if not isinstance(progress, bool) else (sys.stderr if progress else None)
    bar: ByteProgress | None = None
    failures = 0
    last_error = ""
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if expected_size is not None and offset > expected_size:
            part.unlink()
            offset = 0
        if expected_size is not None and offset == expected_size:
            break
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:
                m = _UNSATISFIABLE.match(err.headers.get("Content-Range", "") or "")
                if m and int(m.group(1)) == offset:
                    break  # the part file already holds the whole file
                part.unlink()
                continue
            if err.code in (408, 429, 500, 502, 503, 504) and failures < retries:
                failures += 1
                sleep(min(2.0 ** failures, 30.0))
                continue
            raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            failures += 1
            last_error = str(getattr(err, "reason", err))
            if failures > retries:
                raise DownloadError(f"cannot download {url} after {retries} retries: {last_error}") from err
            sleep(min(2.0 ** failures, 30.0))
            continue
        with response:
            if response.status == 200 and offset:
                offset = 0  # the server ignored the range: start over
                part.unlink(missing_ok=True)
            total = _total_from(response, offset)
            if expected_size is not None and total is not None and total != expected_size:
                part.unlink(missing_ok=True)
                raise DownloadError(f"{url} is {total} bytes, the model card expects {expected_size}: "
                                    f"refusing a different or damaged file")
            if stream is not None and bar is None:
                bar = ByteProgress(dest.name, total or expected_size, offset, stream)
            got = 0
            if _noted_url(dest) != url:  # before the first byte is kept
                note_path(dest).write_text(json.dumps({"url": url}) + "\n", encoding="utf-8")
            try:
                with part.open("ab" if offset else "wb") as fh:
                    while chunk := response.read(CHUNK):
                        fh.write(chunk)
                        got += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:  # connection dropped mid-file
                last_error = str(err) or type(err).__name__
            size = part.stat().st_size if part.exists() else 0
            if total is not None and size > total:
                part.unlink()
                raise DownloadError(f"{url}: received {size} bytes, more than the {total} announced")
            if total is not None and size == total:
                break
            if total is None and got and not last_error:
                break  # no length announced: the end of the stream is the end of the file
        failures = 0 if got else failures + 1
        if failures > retries:
            raise DownloadError(f"cannot download {url}: no progress after {retries} retries "
                                f"({last_error or 'connection closed early'}); {part} is kept to resume")
        last_error = ""
        if not got:
            sleep(min(2.0 ** failures, 30.0))
    if bar is not None:
        bar.close()
    return _finish(part, dest, expected_size, sha256)
