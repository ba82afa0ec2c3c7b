"""The species folder tree (`--species-folders OUT`): OUT/Station/[Camera/]Species/file, for camtrapR's
recordTable(IDfrom = "directory").

People correct such a tree by hand: they move a file into the right species folder, rename it, delete
a wrong one, add a note.  A re-run must never undo that.  So each build writes a manifest of what it
placed (path, sha256 and source of every file, the folders it made), and the next build compares the
tree with it first:

- a file of ours found at another path (same content) was moved by a person: a *correction*, kept
  where they put it (and remembered, so later runs keep it too); its image is not placed again;
- a file of ours that is gone, or whose bytes changed, was removed or replaced by a person: its image
  stays out (remembered), and a replaced file is kept as theirs;
- every other file, link and folder is theirs and is carried into the new tree at the same path;
- an image placed under several species (`--every-animal`: one copy per species it shows) one copy of which a
  person moved or removed keeps its other copies where they are, remembered as the person left them.

The new tree is built beside OUT (hard links to the old tree's files for what is carried), swapped in
with two renames, and the old one is removed only once it is seen unchanged since it was read.  A folder
holding anything but a readable manifest of ours (an empty marker file included) is never rebuilt.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from deepfaune_plugin.api import (STANDIN_MARK, STANDIN_VALUE, FolderLock, HostError, file_sha256, parse_json,
                                  place_file, safe_folder_name, say, staging_dir, unique_target)

MANIFEST = ".deepfaune_species_folders.json"  # what a build placed; a rebuild may replace exactly that
LEGACY_MARKER = ".deepfaune_species_folders"  # an empty marker of older versions: licenses nothing
FORMAT = 1
NA = "NA"


class SpeciesFoldersError(HostError):
    pass


@dataclass(frozen=True)
class Placed:
    """One file in the tree, as its manifest records it."""

    path: str  # relative, "/"-separated
    sha256: str
    source: str  # absolute path of the original media
    corrected: bool = False  # put there by a person (a move), not by a prediction


@dataclass
class Manifest:
    files: list[Placed] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)  # folders a build made (the others are a person's)
    excluded: set[str] = field(default_factory=set)  # sources a person took out of the tree
    standin: bool = False  # placed by a run on stand-in models (RunResults.standin): said in the manifest

    def dump(self) -> bytes:
        return (json.dumps({
            "deepfaune_species_folders": FORMAT,
            "about": "what deepfaune placed in this species tree; a re-run keeps every change you make here "
                     "(moved files are corrections, removed files stay out, your own files stay)",
            **({"models": STANDIN_VALUE, "warning": f"placed by {STANDIN_MARK}"} if self.standin else {}),
            "files": [{"path": f.path, "sha256": f.sha256, "source": f.source, **({"corrected": True}
                                                                                   if f.corrected else {})}
                      for f in self.files],
            "folders": sorted(self.folders),
            "excluded": sorted(self.excluded),
        }, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass
class TreeReport:
    """What a build did, for the run's message."""

    link: int = 0
    copy: int = 0
    corrections: int = 0  # files a person moved, kept where they are
    kept: int = 0  # a person's own files, links and folders carried over
    left_out: int = 0  # images a person removed from the tree, not placed again
    reviewed_kept: int = 0  # images labelled in deepfaune review that stay where a person moved (or removed) them
    #: (what, name) -> its folder, for the names that are no folder name as written (`folder_name`)
    renamed: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe(self, out: Path) -> str | None:
        parts = []
        if self.corrections:
            parts.append(f"{self.corrections} file(s) you moved kept where you put them")
        if self.kept:
            parts.append(f"{self.kept} file(s) or folder(s) of yours kept")
        if self.left_out:
            parts.append(f"{self.left_out} file(s) you removed left out")
        if self.reviewed_kept:
            parts.append(f"{self.reviewed_kept} of them labelled in deepfaune review too: the tree keeps them where "
                         "you put them, not under that label")
        parts += [f"{what} {name!r} is the folder {folder!r} (not a folder name as written): recordTable() "
                  f"over this tree calls it {folder!r}" for (what, name), folder in self.renamed.items()]
        return f"--species-folders {out}: " + "; ".join(parts) if parts else None


def folder_name(name: str) -> str:
    """A station, camera or species as its folder in the tree: the name itself wherever it can be one folder
    name here (a station tree's own folder names always can), because recordTable(IDfrom = "directory") names
    stations, cameras and species after these folders and must read back the record table's; else (a record
    table's "A/B" or "..", or Windows' refused characters) `safe_folder_name`'s."""
    if os.name == "nt" or not name or name in (".", "..") or "/" in name or "\0" in name:
        return safe_folder_name(name)
    try:
        return name if len(os.fsencode(name)) <= 255 else safe_folder_name(name)
    except UnicodeError:
        return safe_folder_name(name)


def _load_manifest(out: Path) -> Manifest:
    path = out / MANIFEST
    try:
        data = parse_json(path.read_text(encoding="utf-8"), str(path))
        if not isinstance(data, dict) or data.get("deepfaune_species_folders") != FORMAT:
            raise ValueError("not a manifest of this format")
        files = [Placed(str(f["path"]), str(f["sha256"]), str(f["source"]), bool(f.get("corrected", False)))
                 for f in data["files"]]
        return Manifest(files, {str(p) for p in data["folders"]}, {str(s) for s in data["excluded"]})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SpeciesFoldersError(f"--species-folders {out}: {MANIFEST} cannot be read ({err}); without it "
                                  "deepfaune cannot tell your changes from its own files, so it will not rebuild "
                                  "this folder: move it away (or delete it yourself) and run again") from None


def placed_by_deepfaune(out: Path) -> frozenset[str] | None:
    """The files a build placed in `out` by DeepFaune's prediction and still at that path: their species folder
    is DeepFaune's answer, not a person's label (a file a person moved is at another path, or is recorded as a
    correction). None when `out` holds no manifest; SpeciesFoldersError when it holds one that cannot be read."""
    if not (Path(out) / MANIFEST).is_file():
        return None
    return frozenset(f.path for f in _load_manifest(Path(out)).files if not f.corrected)


def check_species_root(out: Path) -> None:
    """Refuse, before any model runs, a folder deepfaune may not rebuild: not a folder, or not empty
    without a readable manifest of ours."""
    out = Path(out)
    if out.is_symlink():
        raise SpeciesFoldersError(f"--species-folders {out}: is a symbolic link; name the folder itself")
    if out.exists() and not out.is_dir():
        raise SpeciesFoldersError(f"--species-folders {out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if (out / MANIFEST).is_file():
        _load_manifest(out)
        return
    if (out / LEGACY_MARKER).exists():
        raise SpeciesFoldersError(f"--species-folders {out}: holds the marker of an older deepfaune but no "
                                  f"{MANIFEST} of what it wrote, so your changes there cannot be told from its "
                                  "files and nothing will be replaced: move the folder away (or delete it "
                                  "yourself) and run again")
    raise SpeciesFoldersError(f"--species-folders {out}: folder is not empty and was not made by deepfaune; "
                              "choose a new or empty folder")


@dataclass
class _Scan:
    """The tree as found: every file's hash, links, folders, and a stat signature to see later changes."""

    files: dict[str, str] = field(default_factory=dict)  # relpath -> sha256
    links: dict[str, str] = field(default_factory=dict)  # relpath -> link target
    folders: set[str] = field(default_factory=set)
    signature: set[tuple] = field(default_factory=set)


def _scan(out: Path, with_hashes: bool = True) -> _Scan:
    scan = _Scan()
    for folder, dirs, names in os.walk(out):
        here = Path(folder)
        for name in [*dirs, *names]:
            path = here / name
            rel = path.relative_to(out).as_posix()
            if rel == MANIFEST:
                continue
            st = os.lstat(path)
            scan.signature.add((rel, stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino))
            if stat.S_ISLNK(st.st_mode):
                scan.links[rel] = os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                scan.folders.add(rel)
            elif stat.S_ISREG(st.st_mode):
                if with_hashes:
                    scan.files[rel] = file_sha256(path)
            else:
                raise SpeciesFoldersError(f"--species-folders {out}: {rel} is not a file, link or folder; "
                                          "nothing was changed (move it away and run again)")
    return scan


@dataclass
class _Plan:
    carry: list[str] = field(default_factory=list)  # files of the old tree linked into the new one
    links: dict[str, str] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)  # a person's folders, made again even when empty
    manifest: Manifest = field(default_factory=Manifest)  # corrections and exclusions carried on
    skip: set[str] = field(default_factory=set)  # sources not to place by prediction
    report: TreeReport = field(default_factory=TreeReport)


def _plan(old: Manifest, scan: _Scan) -> _Plan:
    """Tell the tree's changes from deepfaune's files (see the module's docstring)."""
    plan = _Plan()
    plan.manifest.excluded = set(old.excluded)
    unchanged = {f.path for f in old.files if scan.files.get(f.path) == f.sha256}
    foreign = {p: h for p, h in scan.files.items() if p not in unchanged}
    by_hash: dict[str, list[str]] = {}
    ours = {f.path for f in old.files}
    for path in sorted(foreign, key=lambda p: (p in ours, p)):  # new paths first: true moves before edits
        by_hash.setdefault(foreign[path], []).append(path)
    for placed in old.files:
        if placed.path in unchanged and not placed.corrected:
            continue  # ours as we left it: rebuilt from the prediction
        moved_to = placed.path if placed.path in unchanged else None
        if moved_to is None and by_hash.get(placed.sha256):
            moved_to = by_hash[placed.sha256].pop(0)
            foreign.pop(moved_to)
        if moved_to is not None:
            plan.carry.append(moved_to)
            plan.manifest.files.append(Placed(moved_to, placed.sha256, placed.source, corrected=True))
            plan.skip.add(placed.source)
            plan.report.corrections += 1
        else:
            plan.manifest.excluded.add(placed.source)
    plan.skip |= plan.manifest.excluded
    for placed in old.files:  # an image in several species folders (--every-animal) one copy of which a person
        # moved or removed: its other copies stay where they are, as the person left them, not rebuilt
        if placed.path in unchanged and not placed.corrected and placed.source in plan.skip:
            plan.carry.append(placed.path)
            plan.manifest.files.append(Placed(placed.path, placed.sha256, placed.source, corrected=True))
    plan.report.left_out = len(plan.manifest.excluded)
    plan.carry += sorted(foreign)
    plan.links = dict(scan.links)
    plan.folders = scan.folders - old.folders
    plan.report.kept = len(foreign) + len(plan.links) + len(plan.folders)
    return plan


def build_species_tree(out: Path, images: Iterable, lock_wait: float = 0.0, standin: bool = False) -> TreeReport:
    """OUT/Station/[Camera/]Species/file, keeping every change a person made there (module docstring);
    `standin`: the labels come from stand-in models, and the manifest says so."""
    out = Path(os.path.abspath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock(out, lock_wait) as lock:
        report_notes = [lock.note] if lock.note else []
        report_notes += _recover(out)
        check_species_root(out)
        existing = out.is_dir() and any(out.iterdir())
        scan = _scan(out) if existing else _Scan()
        plan = _plan(_load_manifest(out), scan) if existing else _Plan()
        plan.manifest.standin = standin
        work = staging_dir(out)
        try:
            _fill(work, out, plan, images)
            _swap_in(work, out, scan, report_notes)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    plan.report.notes = report_notes
    return plan.report


def _lock(out: Path, wait: float = 0.0) -> FolderLock:
    """One build of a tree at a time: the lock lives beside it (the tree itself is renamed)."""
    return FolderLock(out.parent / f".{out.name}.deepfaune.lock", f"--species-folders {out}", wait=wait)


def recover_tree(out: Path) -> list[str]:
    """What the next build does first: finish with the leftovers of a killed one (notes say what was done)."""
    out = Path(os.path.abspath(out))
    with _lock(out) as lock:
        return ([lock.note] if lock.note else []) + _recover(out)


def _fill(work: Path, out: Path, plan: _Plan, images: Iterable) -> None:
    report, manifest = plan.report, plan.manifest
    for rel in sorted(plan.folders):
        (work / rel).mkdir(parents=True, exist_ok=True)
    for rel in plan.carry:  # a person's files and corrections: the same file (a hard link), else a copy
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        place_file(out / rel, work / rel)
    for rel, target in plan.links.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, work / rel)
    for image in images:
        source = os.path.abspath(image.item.path)
        if source in plan.skip:
            if getattr(getattr(image, "decision", None), "human", None) is not None:
                report.reviewed_kept += 1
            continue
        folder = work / _named(report, "station", image.item.station or NA)
        if image.item.camera is not None:
            folder = folder / _named(report, "camera", image.item.camera)
        folder = folder / _named(report, "species", image.species)
        _no_link_above(work, folder, out, image.item.path.name)
        folder.mkdir(parents=True, exist_ok=True)
        target = unique_target(folder, image.item.path.name)
        kind = place_file(image.item.path, target)
        setattr(report, kind, getattr(report, kind) + 1)
        manifest.files.append(Placed(target.relative_to(work).as_posix(), file_sha256(target), source))
    manifest.folders = {p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_dir()
                        and not p.is_symlink()} - plan.folders
    (work / MANIFEST).write_bytes(manifest.dump())


def _no_link_above(work: Path, folder: Path, out: Path, name: str) -> None:
    """A person's link carried into the tree is never a way out of it: placing a file through a link at a
    station's, camera's or species' folder would write into whatever the link points at."""
    rel = folder.relative_to(work)
    for depth in range(1, len(rel.parts) + 1):
        if work.joinpath(*rel.parts[:depth]).is_symlink():
            linked = PurePosixPath(*rel.parts[:depth])
            raise SpeciesFoldersError(f"--species-folders {out}: {linked} is a link of yours where "
                                      f"{PurePosixPath(*rel.parts, name)} would be placed; nothing was changed "
                                      "(move the link away and run again)")


def _named(report: TreeReport, what: str, name: str) -> str:
    folder = folder_name(name)
    if folder != name:
        report.renamed[(what, name)] = folder
    return folder


def _swap_in(work: Path, out: Path, scan: _Scan, notes: list[str]) -> None:
    """Two renames (the old tree aside, the new in place); the old tree is removed only if nobody changed
    it since it was read, else kept aside and named."""
    if not out.exists():
        os.replace(work, out)
        return
    aside = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.old"  # a name only: nothing to clean if killed here
    os.replace(out, aside)
    try:
        os.replace(work, out)
    except BaseException:
        os.replace(aside, out)
        raise
    if _scan(aside, with_hashes=False).signature == scan.signature:
        trash = aside.with_suffix(".trash")
        os.replace(aside, trash)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        notes.append(f"the tree changed while it was rebuilt; the previous one is kept as {aside}: "
                     "check it for changes of yours, then remove it")


def _recover(out: Path) -> list[str]:
    """Under the lock: what a killed build left beside OUT.  A half-built tree (.part) and a checked old
    one (.trash) go; an old tree set aside (.old) comes back if OUT is missing, else stays, named."""
    notes = []
    prefix = f".{out.name}."
    for leftover in sorted(out.parent.glob(f"{glob.escape(prefix)}*")):
        if not leftover.is_dir() or leftover.is_symlink():
            continue
        if leftover.suffix in (".part", ".trash"):
            shutil.rmtree(leftover, ignore_errors=True)
        elif leftover.suffix == ".old":
            if not out.exists():
                os.replace(leftover, out)
                notes.append(f"an interrupted rebuild was undone: {out} is the previous tree again")
            else:
                notes.append(f"an interrupted rebuild left the previous tree as {leftover}: check it for changes "
                             "of yours, then remove it")
    return notes


def warn_notes(report: TreeReport, out: Path) -> None:
    for note in [*report.notes, report.describe(out)]:
        if note:
            say(f"camtrapr: {note}")
