"""Turn a path written in someone else's manifest into a file under its root, or refuse it.

Timelapse (RelativePath + File), Camtrap DP (filePath) and camtrapR (Directory) tables are
files anyone can edit or send; an entry like ``../../.ssh/id_rsa`` or ``C:\\Windows\\...`` must
never make us read (or, when sorting, write) outside the folder the user pointed us at.
Both ``/`` and ``\\`` separate folders here: Timelapse writes Windows paths.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

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
