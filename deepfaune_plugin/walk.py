"""List the media files of a folder tree, the way every host that reads plain folders needs it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from .types import IMAGE_SUFFIXES, Problem

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
            problems.append(Problem(Path(rel).as_posix(), f"cannot list folder: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(OWN_FOLDER_PREFIXES) and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() not in suffixes:
                continue
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() and not path.exists():
                if problems is not None:
                    problems.append(Problem(rel, "broken symbolic link"))
                continue
            yield path, rel
