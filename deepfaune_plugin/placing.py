"""Putting a user's media into folders we build (sorted copies, species folders, a new package).

The originals are never touched: a file is hard-linked (no extra space) or copied, never moved here.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

_WINDOWS_REFUSES = '<>:"/\\|?*'


def safe_folder_name(label: str) -> str:
    """A label as one folder name: separators and characters Windows refuses become "_"; never empty."""
    cleaned = "".join("_" if ch in _WINDOWS_REFUSES or ord(ch) < 32 else ch for ch in label).strip(" .")
    return cleaned or "_"


def unique_target(folder: Path, name: str) -> Path:
    """name.ext, then name_2.ext, name_3.ext... (DeepFaune's rule for clashes)."""
    target = folder / name
    stem, suffix = os.path.splitext(name)
    n = 2
    while target.exists() or target.is_symlink():
        target = folder / f"{stem}_{n}{suffix}"
        n += 1
    return target


def place_file(src: Path, dst: Path, *, link: bool = True) -> str:
    """Hard-link `src` at `dst` when `link` and the file system allows it, else copy it (with its dates).

    Returns "link" or "copy", what was done: another disk, or a file system without hard links, copies.
    `dst` must be a new name (`unique_target`, or a folder being built): a copy would replace a file there.
    """
    if link:
        try:
            os.link(src, dst)
            return "link"
        except OSError:
            pass
    shutil.copy2(src, dst)
    return "copy"
