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

from .paths import not_regular
from .types import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Problem

#: Images and videos (avi, mp4, mov, m4v, mpeg/mpg, mkv, asf): what a folder of camera-trap media holds.
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
#: Folders we write ourselves (sorted copies, caches, backups) and never read back as input.
OWN_FOLDER_PREFIXES = ("deepfaune_", ".deepfaune")


def _reporter(root: Path, problems: list[Problem] | None):
    def onerror(err: OSError) -> None:
        if problems is not None:
            rel = os.path.relpath(err.filename, root) if err.filename else "."
            problems.append(Problem(printable(Path(rel).as_posix()), f"cannot list folder: {err.strerror}"))

    def report(rel: str, reason: str, skipped: int = 1) -> None:
        if problems is not None:
            problems.append(Problem(rel, reason, skipped))

    return onerror, report


def _walked_folder(name: str) -> bool:
    return not name.startswith(OWN_FOLDER_PREFIXES) and not name.startswith(".")


def _media_files(root: Path, dirpath: str, filenames: list[str], suffixes: frozenset[str], report,
                 regular: frozenset[str] | set[str] = frozenset()) -> Iterator[tuple[Path, str]]:
    """The media among one folder's file names, sorted, with what is wrong with them reported.  `regular`: names
    the folder's listing already typed as regular files, not links (`os.DirEntry.is_file(follow_symlinks=False)`,
    from the directory itself): not asked of the disk again, one stat less per file of a season."""
    # (os.path.splitext: Path(n).suffix for any name kept, without a Path per name; a season is 100,000 names)
    names = [n for n in sorted(filenames) if not n.startswith(".") and os.path.splitext(n)[1].lower() in suffixes]
    taken = set(names)  # an escaped name must not pass for a real one (a file may be named "a\\xe9.jpg")
    folder = Path(dirpath)
    prefix = folder.relative_to(root).as_posix()  # the folder's part of every relpath, worked out once
    prefix = "" if prefix == "." else prefix + "/"
    for name in names:
        path = folder / name
        true_rel = prefix + name
        rel = printable(true_rel)
        why = None if name in regular else not_regular(path)
        if why == "no such file" and path.is_symlink():
            report(rel, "broken symbolic link (its target does not exist); skipped")
            continue
        if why:
            report(rel, f"{why}; skipped")
            continue
        if rel != true_rel:
            if printable(name) != name and printable(name) in taken:
                report(rel, "file name is not valid UTF-8 and, written with \\xNN, is another file's; skipped")
                continue
            report(rel, "file name is not valid UTF-8; written with \\xNN for its odd bytes", skipped=0)
        yield path, rel


def iter_media(root: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES, problems: list[Problem] | None = None
               ) -> Iterator[tuple[Path, str]]:
    """Yield (path, POSIX path relative to root) in a stable order: folders and names sorted.

    Unreadable folders and broken links are reported in `problems` instead of stopping the walk.
    """
    root = Path(root)
    onerror, report = _reporter(root, problems)
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if _walked_folder(d))
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                _linked_folder(root, Path(dirpath) / name, report)
        yield from _media_files(root, dirpath, filenames, suffixes, report)


def count_media(root: Path, suffixes: frozenset[str] = MEDIA_SUFFIXES) -> int:
    """About how many files `iter_media` lists (broken links and clashing names included), without a stat
    per file: for a progress line."""
    total = 0
    for _, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if _walked_folder(d)]
        total += sum(1 for n in filenames if not n.startswith(".") and os.path.splitext(n)[1].lower() in suffixes)
    return total


def iter_media_blocks(root: Path, suffixes: frozenset[str] = MEDIA_SUFFIXES, problems: list[Problem] | None = None
                      ) -> Iterator[list[tuple[Path, str]]]:
    """The files of `iter_media`, listed lazily in the blocks sequences never cross -- a folder's images,
    each video alone -- and in the order DeepFaune numbers them (by each block's first name in the sorted
    list of every path), so a season's run holds one folder at a time, never the whole tree.

    A folder's images come out whole when its first image's name is reached; a subfolder's blocks where
    "subfolder/" sorts among the folder's names (every path under it sorts there too).
    """
    root = Path(root)
    onerror, report = _reporter(root, problems)

    def visit(directory: Path) -> Iterator[list[tuple[Path, str]]]:
        try:
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError as err:
            onerror(err)
            return
        folders = [e for e in entries if e.is_dir() and _walked_folder(e.name)]  # as os.walk does
        files = [e for e in entries if not e.is_dir()]
        regular = {e.name for e in files if e.is_file(follow_symlinks=False)}
        media = sorted(_media_files(root, str(directory), [e.name for e in files], suffixes, report, regular),
                       key=lambda m: m[1])
        videos = [m[0].suffix.lower() in VIDEO_SUFFIXES for m in media]
        images = [m for m, video in zip(media, videos) if not video]
        units: list[tuple[str, list[tuple[Path, str]] | os.DirEntry[str]]] = [
            (rel, [(path, rel)]) for (path, rel), video in zip(media, videos) if video]
        if images:
            units.append((images[0][1], images))
        for entry in folders:
            rel = printable(Path(entry.path).relative_to(root).as_posix())
            units.append((rel + "/", entry))
        for _, unit in sorted(units, key=lambda u: u[0]):
            if isinstance(unit, list):
                yield unit
            elif unit.is_symlink():  # as in iter_media: said, never followed
                _linked_folder(root, Path(unit.path), report)
            else:
                yield from visit(Path(unit.path))

    yield from visit(root)


def _linked_folder(root: Path, path: Path, report) -> None:
    """A symbolic link to a folder is never followed (it may lead outside the root, or back into it: a loop,
    or every file twice); said once, so that its files are not missed without a word."""
    rel = printable(path.relative_to(root).as_posix())
    report(rel + "/", "symbolic link to a folder; not followed, its files are not read "
                      "(give the folder it points to, or copy it in)")


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
