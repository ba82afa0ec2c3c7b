"""Read what a camtrapR user has: a station tree, or a record table written by recordTable().

Tree: ``inDir/Station/[Camera/]files``, as recordTable() requires (station folders mandatory;
a first sub-folder of a station is its camera). Files directly in inDir are reported, not read.
The files are those recordTable() reads (camtrapR 3.0: exiftool ``-r -ext jpg`` on each station
folder, then runExiftool() drops every FileName matching ``^[._]``): extension ``.jpg`` in any
case by default (not ``.jpeg``, ``.png``...), or the extensions of recordTable(video =
list(file_formats = ...)) given as ``--file-formats jpg,mp4``; names starting with ``.`` or ``_``
(macOS ``._`` files) never; sub-folders starting with ``.`` are not entered (exiftool's ``-r``), but a
station folder starting with ``.`` is read (recordTable() lists stations with ``list.dirs()``, which lists
hidden folders, and hands each to exiftool by name). What that rule leaves out is not the source's media: it
is counted in a note and does not make the run incomplete. ``Directory`` is written as exiftool writes it:
inDir as given (relative stays relative) followed by the file's folders.

Record table: a CSV with camtrapR's ``Directory`` and ``FileName`` columns (and ``Station``,
optionally ``Camera``, ``DateTimeOriginal``), as written by ``write.csv`` (leading unnamed
row-name column, quoted fields), UTF-8 or the Windows code page R uses there (UTF-16 refused: save it as UTF-8), "," ";" or tab
separated. ``Directory`` is what exiftool wrote: absolute, or relative to R's working folder (looked
up against the table's folder and the folders above it, then the current folder); when it does
not exist as written it is looked up under the table's folder, dropping leading components one
by one (data moved to another disk or machine).
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from deepfaune_plugin.api import (MEDIA_SUFFIXES, OWN_FOLDER_PREFIXES, HostError, Manifest, MediaItem, Problem,
                                  UntrustedInputError, decode_user_text, is_plain_name, iter_media)

from deepfaune_plugin.hooks.camtrapr.species import MANIFEST, SpeciesFoldersError, placed_by_deepfaune

HOST = "camtrapr"
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")  # R on Windows writes CSVs in the native code page
REQUIRED = ("Directory", "FileName")
NA_VALUES = frozenset({"", "NA"})
DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d.%m.%Y %H:%M:%S",
)


class CamtrapRSourceError(HostError):
    pass


@dataclass(frozen=True)
class TableKey:
    """What a record-table row said, written back unchanged in Directory / FileName."""

    row: int  # 1-based data row number in the CSV
    directory: str
    filename: str


@dataclass
class SourceState:
    """Manifest.host_state: what write() needs to know about the source."""

    kind: str  # "tree" or "table"
    source: Path
    has_camera: bool


# ---------------------------------------------------------------- station tree


#: recordTable()'s default file_formats: JPG images only (videos need its `video` argument)
DEFAULT_FILE_FORMATS = ("jpg",)
#: runExiftool() drops these names ("._" files macOS leaves on cards, and any name starting with . or _)
IGNORED_NAME_START = (".", "_")


def file_formats(value: object) -> tuple[str, ...]:
    """--file-formats "jpg,mp4" as camtrapR's file_formats: extensions without the dot, lower case."""
    if value in (None, "", ()):
        return DEFAULT_FILE_FORMATS
    values = [value] if isinstance(value, str) else list(value)  # type: ignore[arg-type]
    formats = tuple(dict.fromkeys(p.strip().lower().lstrip(".") for v in values for p in str(v).split(",")
                                  if p.strip()))
    unreadable = [f for f in formats if f".{f}" not in MEDIA_SUFFIXES]
    if unreadable or not formats:
        raise CamtrapRSourceError(f"--file-formats {value}: {', '.join(unreadable) or 'nothing'} cannot be read; "
                                  f"choose among {', '.join(sorted(s.lstrip('.') for s in MEDIA_SUFFIXES))}")
    return formats


def read_tree(root: Path, formats: tuple[str, ...] = DEFAULT_FILE_FORMATS,
              species_from_folders: bool = False) -> Manifest:
    """The tree's media; `species_from_folders`: the last folder level is a species folder (camtrapR's
    IDfrom = "directory": Station/[Camera/]Species/file), the label a person gave, kept as human_labels."""
    root = Path(root)
    if not root.is_dir():
        raise CamtrapRSourceError(f"{root}: not a folder (camtrapR's inDir holds one folder per station)")
    problems: list[Problem] = []
    items: list[MediaItem] = []
    ignored: list[str] = []
    other: list[str] = []
    labels: dict[str, str] = {}
    wanted = frozenset(f".{f}" for f in formats)
    for path, rel in _station_media(root, problems):
        if path.suffix.lower() not in wanted:
            other.append(rel)
            continue
        if path.name.startswith(IGNORED_NAME_START):
            ignored.append(rel)
            continue
        parts = rel.split("/")
        if len(parts) == 1:
            problems.append(Problem(rel, "directly in the source folder: camtrapR needs station folders "
                                         "(inDir/Station/[Camera/]file); move it into its station's folder"))
            continue
        levels = len(parts) - 1 - (1 if species_from_folders and len(parts) > 2 else 0)  # folders above the file
        camera = parts[1] if levels > 1 else None
        if species_from_folders and len(parts) > 2:
            labels[rel] = parts[-2]
        items.append(MediaItem(path=path, relpath=rel, group=str(PurePosixPath(rel).parent),
                               station=parts[0], camera=camera))
    hidden = _hidden_names(root, wanted)  # the walk never lists them; recordTable() drops them
    ignored = hidden + ignored
    # camtrapR's own rule leaves these out: not media of the source, so said (counted) but not "skipped"
    if ignored:
        problems.append(Problem(ignored[0], f"{len(ignored)} file(s) whose name starts with '.' or '_' left out, as "
                                            "camtrapR's recordTable() leaves them out", skipped=0))
    if other:
        problems.append(Problem(other[0], f"{len(other)} file(s) of other formats left out: camtrapR's recordTable() "
                                          f"reads {', '.join(sorted(wanted))} here (--file-formats to change)",
                                skipped=0))
    if labels:
        labels = _people_only(root, labels, problems)
    if not items:
        raise CamtrapRSourceError(f"{root}: no {', '.join(sorted(wanted))} files in station folders (expected "
                                  "inDir/Station/[Camera/]file; camtrapR reads .jpg only unless recordTable(video = "
                                  "...) names other formats: give them with --file-formats)"
                                  + (f"; {len(problems)} file(s) reported" if problems else ""))
    state = SourceState("tree", root, has_camera=any(i.camera is not None for i in items))
    return Manifest(root=root, items=items, problems=problems, host=HOST, host_state=state, human_labels=labels)


def _station_folders(root: Path) -> list[str]:
    """Station folders whose name starts with "." (not ours): recordTable() reads them, the walk does not."""
    try:
        with os.scandir(root) as listing:
            return sorted(e.name for e in listing if e.name.startswith(".") and not e.name.startswith(
                OWN_FOLDER_PREFIXES) and e.is_dir(follow_symlinks=False))
    except OSError:
        return []  # the walk below reports an unreadable inDir


def _station_media(root: Path, problems: list[Problem]):
    """iter_media over inDir, hidden station folders included (first: "." sorts before letters)."""
    for name in _station_folders(root):
        for path, rel in iter_media(root / name, MEDIA_SUFFIXES, problems=problems):
            yield path, f"{name}/{rel}"
    yield from iter_media(root, MEDIA_SUFFIXES, problems=problems)


def _hidden_names(root: Path, wanted: frozenset[str]) -> list[str]:
    """Files of a wanted format whose name starts with "." in the folders read (the walk does not list them)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        top = dirpath == os.fspath(root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(OWN_FOLDER_PREFIXES)
                             and (top or not d.startswith(".")))  # hidden folders: stations only
        if top:
            continue  # files directly in inDir are reported by the walk
        rel = Path(dirpath).relative_to(root).as_posix()
        found += [f"{rel}/{n}" for n in sorted(filenames)
                  if n.startswith(".") and os.path.splitext(n)[1].lower() in wanted]
    return found


def _people_only(root: Path, labels: dict[str, str], problems: list[Problem]) -> dict[str, str]:
    """The species-folder labels a person gave: in a tree `--species-folders` built (its manifest at the root), a
    file still where DeepFaune placed it sits in DeepFaune's own answer, and is left out (said, with the count);
    a file a person moved, or put there, keeps its folder as their label.  An unreadable manifest leaves every
    folder out: DeepFaune's placements could not be told from a person's."""
    try:
        ours = placed_by_deepfaune(root)
    except SpeciesFoldersError as err:
        problems.append(Problem(MANIFEST, f"{err}; none of the {len(labels)} species folder label(s) is taken for "
                                          "a person's: left out of the evaluation", skipped=0))
        return {}
    if not ours:
        return labels
    left = sorted(rel for rel in labels if rel in ours)
    if left:
        problems.append(Problem(left[0], f"{len(left)} file(s), e.g. this one, are where DeepFaune placed them "
                                         f"(--species-folders, {MANIFEST}): their species folder is its own answer, "
                                         "not a person's label; left out of the evaluation", skipped=0))
    return {rel: label for rel, label in labels.items() if rel not in ours}


def inside_listed_tree(root: Path, folder: Path) -> bool:
    """True when `folder` is inside `root` where the tree walk would list it (not a deepfaune_* folder, nor a
    hidden folder below a station)."""
    try:
        rel = Path(os.path.abspath(folder)).relative_to(os.path.abspath(root))
    except ValueError:
        return False
    return not any(part.startswith(OWN_FOLDER_PREFIXES) or (part.startswith(".") and depth > 0)
                   for depth, part in enumerate(rel.parts))  # a hidden station folder is read


# ---------------------------------------------------------------- record table


def decode(data: bytes, path: Path) -> str:
    try:
        return decode_user_text(data, str(path), ENCODINGS)
    except UntrustedInputError as err:  # UTF-16 (Excel's "Unicode text"): said, not read as garbled columns
        raise CamtrapRSourceError(f"{err}; nothing was written") from None


def _dialect(text: str) -> tuple[str, list[str]]:
    """The delimiter whose header holds Directory and FileName, and that header."""
    first = text.splitlines()[0] if text else ""
    for delimiter in (",", ";", "\t"):
        header = next(csv.reader([first], delimiter=delimiter), [])
        names = {h.strip().lower() for h in header}
        if all(r.lower() in names for r in REQUIRED):
            return delimiter, header
    return ",", next(csv.reader([first]), [])


def looks_like_record_table(path: Path) -> bool:
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".csv", ".txt", ".tsv"):
        return False
    with open(path, "rb") as fh:
        head = fh.read(65536)
    try:
        text = decode(head, path)
    except CamtrapRSourceError:  # UTF-16: recognised here, so that reading it says what to do
        text = head.decode("utf-16", errors="replace")
    _, header = _dialect(text)
    names = {h.strip().lower() for h in header}
    return all(r.lower() in names for r in REQUIRED)


def _column(header: list[str], name: str) -> int | None:
    for i, h in enumerate(header):
        if h.strip() == name:
            return i
    for i, h in enumerate(header):
        if h.strip().lower() == name.lower():
            return i
    return None


def parse_datetime(text: str) -> datetime | None:
    text = text.strip()
    if text in NA_VALUES:
        return None
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


_SEPARATORS = re.compile(r"[\\/]+")


class _Resolver:
    """Finds a row's file: as camtrapR wrote it, then by trailing components (data moved).

    recordTable() lists `list.dirs(inDir)`, so a relative inDir gives Directory values relative to
    R's working folder at the time ("./StationA" for inDir = ".", "survey/img/StationA" for
    inDir = "survey/img"), and writes the table into inDir or outDir.  So a relative Directory is
    looked up against the table's folder and each folder above it (the nearest first: R's working
    folder is one of them whenever inDir or outDir lay below it), then the current folder.
    """

    def __init__(self, base: Path):
        self.base = base
        self._dirs: dict[str, list[Path]] = {}

    def _candidates(self, directory: str) -> list[Path]:
        if directory not in self._dirs:
            found: list[Path] = []
            written = Path(directory)
            if written.is_absolute():
                found.append(written)
            else:  # relative to R's working folder: the table lies in inDir or outDir, both below it
                found.extend(folder / written for folder in (self.base, *self.base.parents))
                found.append(Path.cwd() / written)
            parts = [p for p in _SEPARATORS.split(directory) if p]
            for k in range(len(parts)):
                tail = parts[k:]
                if k == 0 and re.match(r"^[A-Za-z]:$", tail[0]):
                    continue  # a Windows drive letter read on another system
                found.append(self.base.joinpath(*tail))
            unique: list[Path] = []
            for c in found:
                if c not in unique and c.is_dir():
                    unique.append(c)
            self._dirs[directory] = unique
        return self._dirs[directory]

    def find(self, directory: str, filename: str) -> Path | None:
        if not is_plain_name(filename):  # "../x" or "a/b" would reach files the table does not list
            return None
        for folder in self._candidates(directory):
            path = folder / filename
            if path.is_file():
                return Path(os.path.abspath(path))
        return None


def read_record_table(csv_path: Path) -> Manifest:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CamtrapRSourceError(f"{csv_path}: no such record table")
    text = decode(csv_path.read_bytes(), csv_path)
    delimiter, _ = _dialect(text)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as err:  # e.g. a field over the csv module's 131,072-character limit
        raise CamtrapRSourceError(f"{csv_path}: not a readable record table ({err}); nothing was written") from None
    if not rows:
        raise CamtrapRSourceError(f"{csv_path}: empty file")
    header = rows[0]
    cols = {name: _column(header, name) for name in (*REQUIRED, "Station", "Camera", "DateTimeOriginal")}
    missing = [name for name in (*REQUIRED, "Station") if cols[name] is None]
    if missing:
        shown = ", ".join(repr(h) for h in header if h.strip()) or "none"
        raise CamtrapRSourceError(f"{csv_path}: not a camtrapR record table: missing column(s) "
                                  f"{', '.join(missing)} (columns found: {shown})")
    resolver = _Resolver(csv_path.parent.absolute())
    problems: list[Problem] = []
    found: list[tuple[Path, str | None, str | None, datetime | None, TableKey]] = []
    seen: dict[Path, int] = {}

    def cell(row: list[str], name: str) -> str:
        i = cols[name]
        return row[i].strip() if i is not None and i < len(row) else ""

    for number, row in enumerate(rows[1:], start=1):
        if not any(v.strip() for v in row):
            continue
        where = f"{csv_path.name} row {number}"
        directory, filename = cell(row, "Directory"), cell(row, "FileName")
        if directory in NA_VALUES or filename in NA_VALUES:
            problems.append(Problem(where, "no Directory or FileName"))
            continue
        station = cell(row, "Station")
        if station in NA_VALUES:
            problems.append(Problem(where, f"{filename}: no Station"))
            continue
        if PurePosixPath(filename).suffix.lower() not in MEDIA_SUFFIXES:
            problems.append(Problem(where, f"{filename}: not an image or video this host reads"))
            continue
        path = resolver.find(directory, filename)
        if path is None:
            problems.append(Problem(where, f"{directory}/{filename}: file not found (looked as written and "
                                           f"under {csv_path.parent})"))
            continue
        if path in seen:
            problems.append(Problem(where, f"{filename}: same file as row {seen[path]}; classified once",
                                    skipped=0))
            continue
        seen[path] = number
        camera = cell(row, "Camera")
        found.append((path, station, None if camera in NA_VALUES else camera,
                      parse_datetime(cell(row, "DateTimeOriginal")), TableKey(number, directory, filename)))
    if not found:
        raise CamtrapRSourceError(f"{csv_path}: none of the table's files could be used"
                                  + (f" ({len(problems)} problem(s), first: {problems[0].relpath}: "
                                     f"{problems[0].reason})" if problems else " (no data rows)"))
    root = _common_root([f[0] for f in found], csv_path.parent.absolute())
    items = []
    for path, station, camera, when, key in found:
        rel = _relpath(path, root)
        items.append(MediaItem(path=path, relpath=rel, group=str(PurePosixPath(rel).parent), timestamp=when,
                               station=station, camera=camera, host_key=key))
    state = SourceState("table", csv_path, has_camera=cols["Camera"] is not None)
    return Manifest(root=root, items=items, problems=problems, host=HOST, host_state=state)


def _common_root(paths: list[Path], fallback: Path) -> Path:
    try:
        return Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:  # different drives
        return fallback


def _relpath(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
