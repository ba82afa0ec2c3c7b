"""Write-then-rename, so that an output is either the old file or the complete new one."""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, before any thread writes
    os.umask(mask)
    return mask


_UMASK = _read_umask()
NEW_FILE_MODE = 0o666 & ~_UMASK  # what open() would give a new file; mkstemp gives 0600
NEW_DIR_MODE = 0o777 & ~_UMASK  # what mkdir() would give; mkdtemp gives 0700


class StagedFile:
    """A temporary file next to `path` that becomes `path` only on `commit()`: written in as many steps
    as a long run needs (a season's table block by block), and still all-or-nothing."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.part"):  # left by a killed run
            stale.unlink(missing_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(name)
        os.chmod(self.tmp, NEW_FILE_MODE)  # the usual permissions of a new file, not mkstemp's 0600

    def commit(self) -> Path:
        try:
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


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


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
