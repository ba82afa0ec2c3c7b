"""Turn a path written in someone else's manifest into a file under its root, or refuse it.

Timelapse (RelativePath + File), Camtrap DP (filePath) and camtrapR (Directory) tables are
files anyone can edit or send; an entry like ``../../.ssh/id_rsa`` or ``C:\\Windows\\...`` must
never make us read (or, when sorting, write) outside the folder the user pointed us at.
Both ``/`` and ``\\`` separate folders here: Timelapse writes Windows paths.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import DeepfauneError

_DRIVE = re.compile(r"^[A-Za-z]:")  # C:\x, C:/x, and C:x (relative to C:'s current folder)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


class UnsafePathError(DeepfauneError):
    """A manifest entry that would point outside its root; the message names the manifest and the entry."""

    def __init__(self, manifest: str | os.PathLike | None, entry: str, reason: str):
        self.manifest = None if manifest is None else str(manifest)
        self.entry = entry
        self.reason = reason
        where = f"{self.manifest}: " if self.manifest else ""
        super().__init__(f"{where}entry {entry!r} refused: {reason}")


def plain_parts(text: str) -> tuple[str, ...]:
    """The folder/file names of a relative path, or ValueError saying why it is not one.

    Empty parts and "." are dropped ("a//./b" is a/b); "" and "." give () (the root itself).
    """
    if not isinstance(text, str):
        raise ValueError(f"not text ({type(text).__name__})")
    if "\x00" in text:
        raise ValueError("contains a NUL character")
    if _URL.match(text):
        raise ValueError("a URL, not a path relative to the manifest")
    if _DRIVE.match(text):
        raise ValueError("names a drive (an absolute Windows path)")
    if text.startswith(("/", "\\")):
        raise ValueError("an absolute path (must be relative to the manifest's folder)")
    parts = []
    for part in re.split(r"[/\\]", text):
        if part in ("", "."):
            continue
        # ".." climbs out; Windows also reads "..." or ".. " as "..", so no all-dot name is a name.
        if part.strip(". ") == "":
            raise ValueError("climbs out of its folder ('..')")
        if ":" in part and os.name == "nt":  # an NTFS data stream (file.jpg:hidden); a plain name on POSIX
            raise ValueError("contains ':' (a Windows data stream)")
        parts.append(part)
    return tuple(parts)


def is_plain_name(name: str) -> bool:
    """True for a single file name that stays in its folder ("a.onnx"), False for any path."""
    try:
        return len(plain_parts(name)) == 1 and plain_parts(name)[0] == name
    except ValueError:
        return False


def safe_relative(root: str | os.PathLike, text: str, *, manifest: str | os.PathLike | None = None) -> Path:
    """root / text, refused (UnsafePathError) unless it stays inside root once symlinks are resolved.

    The result keeps the names as written (no symlink resolved), so it can serve as an identity.
    `manifest` is the file the entry came from, named in the error.
    """
    root = Path(root)
    try:
        parts = plain_parts(text)
    except ValueError as err:
        raise UnsafePathError(manifest, str(text), str(err)) from None
    path = root.joinpath(*parts)
    real_root = root.resolve()
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise UnsafePathError(manifest, text, f"cannot be resolved ({err})") from None
    if real != real_root and real_root not in real.parents:
        raise UnsafePathError(manifest, text, f"leads outside {root} through a symbolic link (to {real})")
    return path


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


def _not_regular_kind(mode: int) -> str:
    return "not a regular file (" + next((name for test, name in _KINDS if test(mode)), "not a file") + ")"


def not_regular(path: str | os.PathLike) -> str | None:
    """Why `path` is not a regular file we may read as media, or None when it is one.

    Only regular files are media: reading a FIFO (or a terminal, a socket) named x.jpg would wait
    forever. Symbolic links are followed (the caller checks where they lead); "no such file" for a
    path that is not there, or a link whose target is not.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    return _not_regular_kind(mode)


class NotRegularFileError(OSError):
    """A path we were about to read as media that is not a regular file (FIFO, device, socket, folder)."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """`path` opened for binary reading, only when it is a regular file (NotRegularFileError otherwise).

    Opened without blocking and checked on the open descriptor, so a FIFO swapped in after a listing
    still cannot make a read wait forever (a plain open() of a FIFO waits for a writer).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(_not_regular_kind(mode))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class UnsafeFolderError(DeepfauneError):
    """A folder we write into (a cache, backups) that is a symbolic link or not a folder."""


def own_folder(root: str | os.PathLike, name: str) -> Path:
    """root/name, a folder of ours directly inside `root` (a media cache, backups): created when absent,
    refused when it is a symbolic link or anything but a real folder.

    A package anyone can send may hold `.deepfaune_cache` as a link to another folder; following it would
    make our writes land there (a downloaded ``sitecustomize.py`` in someone's site-packages). mkdir never
    follows a link at its last component, and the check is made on what lstat sees.
    """
    if not is_plain_name(name):
        raise ValueError(f"{name!r} is not a plain folder name")
    path = Path(root) / name
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    try:
        mode = os.lstat(path).st_mode
    except OSError as err:
        raise UnsafeFolderError(f"{path}: cannot use it as our folder ({err.strerror or err})") from None
    if stat.S_ISLNK(mode):
        raise UnsafeFolderError(f"{path} is a symbolic link (to {os.readlink(path)}); this folder must be a real "
                                f"folder inside {root}: remove the link and run again")
    if not stat.S_ISDIR(mode):
        raise UnsafeFolderError(f"{path} is not a folder; remove it or move it away and run again")
    return path


def open_folder(path: str | os.PathLike) -> int:
    """A descriptor of the folder `path` itself (O_NOFOLLOW: never a link's target), for *at() calls that
    keep every later write inside it even if a name along the path is swapped afterwards."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    return os.open(path, flags)
