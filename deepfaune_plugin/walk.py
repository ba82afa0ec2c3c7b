"""List the media files of a folder tree, the way every host that reads plain folders needs it.

File names that are not valid UTF-8 (Linux allows any bytes; old cameras and FAT cards write
Latin-1) keep their real path for reading, but their relpath -- the name written in every CSV,
database and report -- shows each undecodable byte as ``\\xNN`` (b"chamois\\xe9.jpg" becomes
``chamois\\xe9.jpg``), so every output stays valid UTF-8; the walk reports each such name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from .types import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Problem

#: Images and videos (avi, mp4, mov, m4v, mpeg/mpg, mkv, asf): what a folder of camera-trap media holds.
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
#: Folders we write ourselves (sorted copies, caches, backups) and never read back as input.
OWN_FOLDER_PREFIXES = ("deepfaune_", ".deepfaune")


def iter_media(root: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES, problems: list[Problem] | None = None
               ) -> Iterator[tuple[Path, str]]:
    """Yield (path, POSIX path relative to root) in a stable order: folders and names sorted.

    Unreadable folders and broken links are reported in `problems` instead of stopping the walk.
    """
    root = Path(root)

    def onerror(err: OSError) -> None:
        if problems is not None:
            rel = os.path.relpath(err.filename, root) if err.filename else "."
            problems.append(Problem(printable(Path(rel).as_posix()), f"cannot list folder: {err.strerror}"))

    def report(rel: str, reason: str) -> None:
        if problems is not None:
            problems.append(Problem(rel, reason))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(OWN_FOLDER_PREFIXES) and not d.startswith("."))
        names = [n for n in sorted(filenames) if not n.startswith(".") and Path(n).suffix.lower() in suffixes]
        taken = set(names)  # an escaped name must not pass for a real one (a file may be named "a\\xe9.jpg")
        for name in names:
            path = Path(dirpath) / name
            true_rel = path.relative_to(root).as_posix()
            rel = printable(true_rel)
            if path.is_symlink() and not path.exists():
                report(rel, "broken symbolic link (its target does not exist); skipped")
                continue
            if rel != true_rel:
                if printable(name) != name and printable(name) in taken:
                    report(rel, "file name is not valid UTF-8 and, written with \\xNN, is another file's; skipped")
                    continue
                report(rel, "file name is not valid UTF-8; written with \\xNN for its odd bytes")
            yield path, rel


def printable(name: str) -> str:
    """`name` unchanged when it is valid Unicode, else with its undecodable bytes as \\xNN (see above)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:  # POSIX: os.fsdecode kept each undecodable byte as a lone surrogate (surrogateescape)
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # Windows: an unpaired UTF-16 surrogate
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
