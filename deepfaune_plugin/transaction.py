"""Writes that change several files of a user's data at once, and the lock that keeps two runs apart.

One renamed file is atomic on its own (`atomic.py`); two are not: a run killed between the renames of
a package's `observations.csv` and `datapackage.json` would leave a package whose halves disagree.  So
a multi-file write goes through a journal (`commit_files`): every new file is written and flushed under
a fixed hidden name beside its target, then the journal is switched (one rename) from "staging" to
"commit", which is the moment the change happens; the renames follow and the journal is removed.
`recover` (which every writer runs first, under the lock) finishes a change whose journal says
"commit" and throws away one that was still "staging", so after any kill the files are wholly the old
set or wholly the new one.

`FolderLock` keeps two runs from writing the same data at once.  Where the system has advisory locks
(`flock` on POSIX, `msvcrt.locking` on Windows) the kernel holds them and drops them with the process,
even on `kill -9`; the lock file records the holder's pid, host, start time and command, so that a
refusal can say who holds it and a lock file left by a dead process is recognised as stale (by its
pid) and taken over with a note, never cleared by hand.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from .untrusted import parse_json
from .atomic import NEW_FILE_MODE
from .errors import DeepfauneError
from .paths import UnsafePathError, safe_relative

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]  # Windows has no fcntl: every use checks for None
    import msvcrt

JOURNAL_FORMAT = 1
STAGED_SUFFIX = ".deepfaune-new"
_POLL_SECONDS = 0.2
_WINDOWS_LOCK_OFFSET = 1 << 20


class LockedError(DeepfauneError):
    """Another live run holds the lock; the message names the lock file and its holder."""


class JournalError(DeepfauneError):
    """An interrupted change that cannot be finished safely (its files were changed since)."""


# ---------------------------------------------------------------- the lock


@dataclass(frozen=True)
class Holder:
    """Who wrote a lock file (read back for messages and for the stale check)."""

    pid: int | None
    host: str
    since: str
    command: str

    def describe(self) -> str:
        who = f"process {self.pid}" if self.pid is not None else "an unknown process"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        since = f", since {self.since}" if self.since else ""
        command = f" ({self.command})" if self.command else ""
        return f"{who}{where}{since}{command}"


def _read_holder(path: Path) -> Holder | None:
    try:
        data = parse_json(path.read_text(encoding="utf-8"), str(path))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return Holder(pid if isinstance(pid, int) else None, str(data.get("host", "")), str(data.get("since", "")),
                  str(data.get("command", "")))


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine has this pid (a permission refusal means it exists)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill would terminate it there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_lock(fd: int) -> bool | None:
    """True: locked; False: a live process holds it; None: this file system has no locks (some network
    or FUSE mounts), where only the pid in the file can tell."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # a byte far past the holder's record, which others must still be able to read
            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except (BlockingIOError, PermissionError):  # POSIX's EWOULDBLOCK; Windows' "locked by another process"
        return False
    except OSError:
        return None
    return True


def _held_by_pid(path: Path) -> bool:
    """Without system locks: held while the pid it names runs on this machine (and is not us)."""
    holder = _read_holder(path)
    if holder is None or holder.pid is None or (holder.pid == os.getpid() and holder.host == socket.gethostname()):
        return False
    if holder.host != socket.gethostname():
        return True  # its pid cannot be checked from here: held until that machine's run removes it
    return pid_alive(holder.pid)


class FolderLock:
    """An exclusive lock on some user data, held through the file `path` (removed on release).

    `wait`: seconds to wait for another run to finish before refusing (0: refuse at once).
    `what`: the data, for the message ("the package /data/pkg").
    """

    def __init__(self, path: Path, what: str, wait: float = 0.0):
        self.path = Path(path)
        self.note: str | None = None  # set when a stale lock of a dead process was taken over
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            fd = self._open_locked()
            if fd is not None:
                break
            if time.monotonic() >= deadline:
                holder = _read_holder(self.path)
                who = holder.describe() if holder else "another process"
                waited = f" (waited {wait:g} s)" if wait > 0 else ""
                remote = (" (if no DeepFaune run is going on there, remove the lock file)"
                          if holder and holder.host and holder.host != socket.gethostname() else "")
                raise LockedError(f"{what} is being written by another DeepFaune run: {who} holds the lock file "
                                  f"{self.path}{waited}; wait for it to finish and run again{remote}")
            time.sleep(_POLL_SECONDS)
        self._fd: int | None = fd
        previous = _read_holder(self.path)
        if previous is not None and previous.pid is not None and previous.pid != os.getpid():
            alive = previous.host == socket.gethostname() and pid_alive(previous.pid)
            state = "no longer running" if not alive else "not holding it"
            self.note = f"stale lock {self.path} of {previous.describe()} ({state}) taken over"
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode("utf-8"))

    def _open_locked(self) -> int | None:
        """The lock file's descriptor, locked; None while a live process holds it."""
        for _ in range(100):  # the file may be removed (released) between open and lock: open it again
            try:  # never through a link: a package from elsewhere could hold one named like our lock
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
            except OSError:
                if self.path.is_symlink():
                    raise LockedError(f"{self.path}: a symbolic link where DeepFaune keeps its lock file; "
                                      "nothing was changed (remove the link and run again)") from None
                raise
            locked = _try_lock(fd)
            if locked is False or (locked is None and _held_by_pid(self.path)):
                os.close(fd)
                return None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # we locked a file its holder removed on release: not the lock any more
        return None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if fcntl is not None:
            self.path.unlink(missing_ok=True)  # while still held: nobody can be between open and lock on it
            os.close(fd)
        else:  # Windows cannot remove an open file
            os.close(fd)
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass  # another run opened it meanwhile; it is theirs now

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # a run that failed between taking and releasing its lock
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


# ---------------------------------------------------------------- the journal


def file_sha256(path: Path) -> str:
    """Streamed sha256 of a file's bytes (no cache: a file edited in place must give its new hash)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def staged_path(target: Path) -> Path:
    return target.with_name(f".{target.name}{STAGED_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable (POSIX; Windows has no directory handles to flush)."""
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    """A new file, flushed to disk; whatever had its name (a planted link, a leftover) is removed, never followed."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), NEW_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_journal(journal: Path, state: str, entries: list[dict[str, str]]) -> None:
    part = journal.with_name(journal.name + ".part")
    _write_durable(part, json.dumps({"format": JOURNAL_FORMAT, "state": state, "files": entries}).encode("utf-8"))
    os.replace(part, journal)
    _fsync_dir(journal.parent)


def commit_files(journal: Path, files: Sequence[tuple[Path, bytes]]) -> None:
    """Replace every `files` target with its bytes, all or none even across a kill; the caller holds the lock.

    Targets are given relative to the journal's folder in the journal, so a package moved after a kill
    still recovers."""
    journal = Path(journal)
    root = journal.parent
    entries = [{"target": Path(os.path.relpath(path, root)).as_posix(), "sha256": hashlib.sha256(data).hexdigest()}
               for path, data in files]
    recover(journal)  # an earlier kill's leftovers first: its staged names are the ones used below
    _write_journal(journal, "staging", entries)
    try:
        for path, data in files:
            _write_durable(staged_path(Path(path)), data)
        _write_journal(journal, "commit", entries)  # the change happens here
    except BaseException:
        _roll_back(journal, entries)
        raise
    _roll_forward(journal, entries)


def recover(journal: Path) -> str | None:
    """Finish or undo the change an interrupted `commit_files` left; a note saying which, or None.

    Run under the lock, before reading the files: a "commit" journal's staged files are complete (flushed
    before the journal said so) and become the targets; a "staging" journal's are removed."""
    journal = Path(journal)
    journal.with_name(journal.name + ".part").unlink(missing_ok=True)
    try:
        data = parse_json(journal.read_text(encoding="utf-8"), str(journal))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise JournalError(f"{journal}: an interrupted DeepFaune write left this journal, and it cannot be read "
                           f"({err}); check the files it names, then remove it") from err
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("target"), str)
                                                for e in entries):
        raise JournalError(f"{journal}: not a DeepFaune journal; check it, then remove it")
    for entry in entries:  # a journal is a file in someone's package: it never names a file outside it
        try:
            safe_relative(journal.parent, entry["target"], manifest=journal)
        except UnsafePathError as err:
            raise JournalError(f"{err}; nothing was changed (remove the journal)") from None
    if data.get("state") == "commit":
        _roll_forward(journal, entries)
        return f"an interrupted write was completed ({', '.join(e['target'] for e in entries)})"
    _roll_back(journal, entries)
    return "an interrupted write was undone (nothing had been replaced)"


def _roll_forward(journal: Path, entries: list[dict[str, str]]) -> None:
    root = journal.parent
    for entry in entries:
        target = root / entry["target"]
        staged = staged_path(target)
        if os.path.lexists(staged):
            if not staged.is_file() or staged.is_symlink() or file_sha256(staged) != entry.get("sha256"):
                raise JournalError(f"{staged}: differs from what the journal {journal} recorded; nothing more was "
                                   "replaced (check it, then remove the journal)")
            os.replace(staged, target)
        elif not target.is_file() or file_sha256(target) != entry.get("sha256"):
            raise JournalError(f"{target}: the interrupted write in {journal} cannot be completed (its new "
                               "version is gone and the file is not it); check it, then remove the journal")
    for folder in {(root / e["target"]).parent for e in entries}:
        _fsync_dir(folder)
    journal.unlink()
    _fsync_dir(root)


def _roll_back(journal: Path, entries: list[dict[str, str]]) -> None:
    root = journal.parent
    for entry in entries:
        staged_path(root / entry["target"]).unlink(missing_ok=True)
    journal.unlink(missing_ok=True)
