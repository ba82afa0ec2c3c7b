"""Write-then-rename, so that an output is either the old file or the complete new one."""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]  # Windows has no fcntl: every use checks for None


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, before any thread writes
    os.umask(mask)
    return mask


_UMASK = _read_umask()
NEW_FILE_MODE = 0o666 & ~_UMASK  # what open() would give a new file; mkstemp gives 0600
NEW_DIR_MODE = 0o777 & ~_UMASK  # what mkdir() would give; mkdtemp gives 0700


class StagedFile:
    """A temporary file next to `path` that becomes `path` only on `commit()`: written in as many steps
    as a long run needs (a season's table block by block), and still all-or-nothing.

    While it lives it holds a lock on its temporary file, so that another run writing the same output
    clears the leftovers of killed runs but never this one's (it would otherwise lose the blocks written
    so far and commit a truncated table); write through a handle opened once (`open_text`), so that a
    temporary file removed by another program makes `commit` fail instead of publishing a partial file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.part"):  # left by a killed run
            if not _in_use(stale):
                stale.unlink(missing_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        self._held = os.fdopen(fd, "rb")
        if fcntl is not None:
            fcntl.flock(self._held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.tmp = Path(name)
        os.chmod(self.tmp, NEW_FILE_MODE)  # the usual permissions of a new file, not mkstemp's 0600

    def open_text(self):
        """A text handle on the temporary file (UTF-8, newlines as written), to keep for every write."""
        return open(self.tmp, "a", encoding="utf-8", newline="")

    def commit(self) -> Path:
        try:
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            if fcntl is None:  # Windows cannot rename a file it holds open (nor delete it: no lock needed)
                self._release()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        self._release()
        return self.path

    def discard(self) -> None:
        self._release()
        self.tmp.unlink(missing_ok=True)

    def _release(self) -> None:
        if not self._held.closed:
            self._held.close()  # and with it the lock


def _in_use(path: Path) -> bool:
    """True when another live StagedFile holds `path` (its lock goes with its process, even on kill -9)."""
    if fcntl is None:
        return False  # Windows refuses to remove a file some process holds open
    try:
        with open(path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when fh closes
    except BlockingIOError:
        return True
    except OSError:
        return True  # cannot even look: leave it
    return False


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed."""
    staged = StagedFile(path)
    try:
        yield staged.tmp
    except BaseException:
        staged.discard()
        raise
    staged.commit()


def staging_dir(target: Path) -> Path:
    """A new hidden folder beside `target`, to fill and then rename into place; as readable as a folder made by
    hand (mkdtemp makes it owner-only)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    os.chmod(work, NEW_DIR_MODE)
    return work


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """`data` written to `path` whole or not at all (`atomic_output`); returns `path`."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
