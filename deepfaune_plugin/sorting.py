"""`deepfaune sort`: one folder per label, as DeepFaune's GUI does, from a result table.

A result table is a file anyone can edit or send, so it is checked whole before anything is placed:
every filename must name a regular file inside the root (symbolic links resolved), every person box
must parse, and a table whose files are not under the root is refused once, with the folder to give,
instead of failing file by file. The sorted tree is built in a hidden folder beside its final name and
renamed into place, so a failed sort leaves nothing half-done (moves are put back).

Under each label the station/camera sub-folders of the source are kept (`--flat`: DeepFaune's old
layout, clashes renamed name_2.ext), and the sorted folder holds ``deepfaune-sort.csv``, the mapping
source -> destination that `deepfaune sort --undo` reads to put everything back; the table of a run on
stand-in models (its `models` column) gives the mapping that column too, so the sorted folder says so.

Only media files (photos, videos) are ever placed. The root is --root, else the table's folder, else the source
of the run record a run writes beside that table (its own name for it, listing that very table): a record
anywhere else, or under another name, is not used; the report says which root was used and why.

A mapping is a file anyone can edit or send too, so `--undo` only follows one a sort of this user wrote: each
sort records the sha256 of its mapping, the root and the sorted folder in the user's own cache folder (0700),
and undo refuses a mapping that is not recorded, that is not where it was written, or any row of which
would take a file anywhere but back to where the sort found it, before anything moves.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from .api import STANDIN_COLUMN, STANDIN_VALUE
from .untrusted import parse_json
from .atomic import staging_dir, write_bytes_atomic
from .engine.imageio import MediaError, read_image
from .errors import DeepfauneError
from .paths import UnsafePathError, plain_parts, safe_relative
from .placing import place_file, safe_folder_name, unique_target
from .table import escape_formula, read_table, unescape_formula
from .walk import MEDIA_SUFFIXES, not_regular

__all__ = ["SortError", "SortReport", "UndoReport", "blur_boxes", "record_mapping", "sort_files", "undo_sort",
           "unique_target"]

BLUR_KERNEL = 151  # DeepFaune's box filter size for human blurring
MAPPING_NAME = "deepfaune-sort.csv"
MAPPING_COLUMNS = ("source", "destination", "label", "mode", "bytes", "mtime_ns")
MAX_SHOWN = 5
MAX_RECORD_BYTES = 1 << 24  # a run record beside a table; larger is not one of ours
MAX_MAPPING_BYTES = 1 << 30  # a mapping: ~150 bytes a file, so millions of files
SORT_RECORD_FORMAT = "deepfaune-sort-record/1"

Box = tuple[float, float, float, float]


class SortError(DeepfauneError):
    pass


@dataclass
class SortReport:
    folder: Path
    done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    root: Path | None = None
    mapping: Path | None = None
    root_reason: str = ""  # why `root` is the folder the table's names are relative to


@dataclass(frozen=True)
class _Planned:
    """One file to place: checked before anything is placed."""

    relpath: str
    source: Path  # root joined with the table's name (symlinks left as written)
    destination: str  # POSIX path inside the sorted folder
    label: str
    boxes: tuple[Box, ...]


def blur_boxes(image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Blur each normalised (x, y, w, h) box with a 151×151 box filter."""
    h, w = image.shape[:2]
    out = image.copy()
    for bx, by, bw, bh in boxes:
        x1, y1 = max(0, int(bx * w)), max(0, int(by * h))
        x2, y2 = min(w, int((bx + bw) * w)), min(h, int((by + bh) * h))
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] = cv2.blur(out[y1:y2, x1:x2], (BLUR_KERNEL, BLUR_KERNEL))
    return out


def parse_boxes(text: object) -> tuple[Box, ...]:
    """`x,y,w,h;x,y,w,h` (normalised) as boxes, or ValueError saying what is wrong with the text."""
    boxes = []
    for part in str(text or "").split(";"):
        if not part.strip():
            continue
        values = part.split(",")
        if len(values) != 4:
            raise ValueError(f"box {part.strip()!r} has {len(values)} values, not 4 (x,y,w,h)")
        try:
            x, y, w, h = (float(v) for v in values)
            box = (x, y, w, h)
        except ValueError:
            raise ValueError(f"box {part.strip()!r} is not four numbers") from None
        if not all(math.isfinite(v) for v in box) or box[2] < 0 or box[3] < 0:
            raise ValueError(f"box {part.strip()!r} is not a finite box of positive size")
        boxes.append(box)
    return tuple(boxes)


def _write_blurred(src: Path, dst: Path, boxes) -> None:
    try:
        image = read_image(src)  # as the detector read it (EXIF orientation, size limits, clear reasons)
    except MediaError as err:
        raise MediaError(f"cannot blur: {err}") from err
    ok, encoded = cv2.imencode(src.suffix or ".jpg", blur_boxes(image, boxes), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise MediaError("cannot encode blurred image")
    encoded.tofile(str(dst))


def _listed(names: list[str]) -> str:
    more = f" (and {len(names) - MAX_SHOWN} more)" if len(names) > MAX_SHOWN else ""
    return "; ".join(names[:MAX_SHOWN]) + more


def _not_media(name: str) -> bool:
    return Path(name).suffix.lower() not in MEDIA_SUFFIXES


def _record_root(results: Path) -> tuple[Path | None, str]:
    """(the source of the run that wrote `results`, why) from its run record, or (None, why none was used).

    Only the record a run writes beside that table is read: in the folder of the table itself (a link to the
    table is followed), under the name the run gives it (`x-run.json` for `-o x.csv`, or deepfaune-run.json),
    a plain file listing that very table among its outputs. A record sent with a table and naming another
    folder (~/.ssh) is still only a root for the media files the table names.
    """
    from .report import RECORD_NAME, report_names

    table = results.resolve()
    notes = []
    for name in dict.fromkeys((report_names(table)[1], RECORD_NAME)):
        path = table.parent / name
        if not os.path.lexists(path):
            continue
        try:
            if path.is_symlink() or not path.is_file():
                raise ValueError("not a plain file")
            if path.stat().st_size > MAX_RECORD_BYTES:
                raise ValueError(f"larger than {MAX_RECORD_BYTES} bytes")
            record = parse_json(path.read_bytes(), str(path))
        except (OSError, ValueError) as err:
            notes.append(f"the run record {path} was not used: {err}")
            continue
        record = record if isinstance(record, dict) else {}
        outputs, source = record.get("outputs"), record.get("source")
        if not str(record.get("format", "")).startswith("deepfaune-run/"):
            notes.append(f"{path} is not a deepfaune run record; not used")
        elif not (isinstance(outputs, list) and any(isinstance(o, dict) and o.get("path") == str(table)
                                                    for o in outputs)):
            notes.append(f"the run record {path} does not list {table} among its outputs; not used")
        elif not (isinstance(source, str) and os.path.isabs(source)):
            notes.append(f"the run record {path} names no absolute source folder; not used")
        else:
            return Path(source), f"the source of the run record {path}, which lists this table as its output"
    return None, "; ".join(notes)


def _check_rows(rows: list[dict], root: Path, results: Path, blur_humans: bool, mode: str
                ) -> tuple[list[tuple[dict, Path, tuple[Box, ...]]], list[str], list[str], list[tuple[str, str]]]:
    """(rows to place, refused rows, missing files, rows not sorted) for one candidate root."""
    ok, refused, missing, skipped = [], [], [], []
    seen: dict[str, str] = {}
    for n, row in enumerate(rows, start=2):
        rel = str(row["filename"])
        if str(row.get("failure", "") or "") or not str(row["prediction"]):
            skipped.append((rel, f"not sorted: {row.get('failure') or 'no prediction'}"))
            continue
        try:
            src = safe_relative(root, rel, manifest=results)
        except UnsafePathError as err:
            refused.append(f"row {n}: filename {rel!r} refused: {err.reason}")
            continue
        if _not_media(src.name):
            refused.append(f"row {n}: {rel} is not a photo or video ({src.suffix or 'no suffix'}); only media "
                           "files are sorted")
            continue
        try:
            boxes = parse_boxes(row.get("person_boxes", "")) if blur_humans else ()
        except ValueError as err:
            refused.append(f"row {n} ({rel}): person_boxes {str(row.get('person_boxes'))!r}: {err}")
            continue
        if mode == "move" and src.is_symlink():
            refused.append(f"row {n}: {rel} is a symbolic link (--mode move would move the link, not its file)")
            continue
        why = not_regular(src)
        if why == "no such file":
            missing.append(rel)
            continue
        if why:
            refused.append(f"row {n}: {rel} is {why}")
            continue
        real = str(src.resolve())
        if _not_media(real):  # a photo's name, linking to something else in the root
            refused.append(f"row {n}: {rel} leads to {os.path.basename(real)}, not a photo or video; only media "
                           "files are sorted")
            continue
        if real in seen:
            refused.append(f"row {n}: {rel} is the same file as {seen[real]}")
            continue
        seen[real] = rel
        ok.append((row, src, boxes))
    return ok, refused, missing, skipped


def _layout(checked, flat: bool) -> list[_Planned]:
    """Where each file goes: label/<its sub-folders>/name, or label/name (clashes renamed) when `flat`."""
    plans, taken = [], set()
    for row, src, boxes in checked:
        rel = str(row["filename"])
        label = str(row["prediction"])
        folder = safe_folder_name(label)
        if flat:
            stem, suffix = os.path.splitext(src.name)
            name, k = src.name, 2
            while f"{folder}/{name}".casefold() in taken:
                name, k = f"{stem}_{k}{suffix}", k + 1
            destination = f"{folder}/{name}"
        else:
            destination = "/".join((folder, *plain_parts(rel)))
        taken.add(destination.casefold())
        plans.append(_Planned(rel, src, destination, label, boxes))
    return plans


def _new_folder(dest: Path, stamp: str) -> Path:
    folder = dest / f"deepfaune_{stamp}"
    n = 2
    while folder.exists() or folder.is_symlink():
        folder = dest / f"deepfaune_{stamp}_{n}"
        n += 1
    return folder


def sort_files(results: Path, dest: Path, root: Path | None = None, mode: str = "copy",
               blur_humans: bool = False, now: datetime | None = None, flat: bool = False,
               skip_missing: bool = False) -> SortReport:
    """Place every classified file of `results` under dest/deepfaune_<date>/<label>/, all or nothing.

    `root` is the folder the table's filenames are relative to; by default the table's folder, else the
    source its run record names (`_record_root`); the report says which and why. Nothing is placed unless
    every row is acceptable, and only media files are.
    """
    results = Path(results)
    if not results.is_file():
        raise SortError(f"{results}: no such result table")
    if mode not in ("copy", "move", "link"):
        raise SortError(f"--mode {mode!r}: copy, move or link")
    if blur_humans and mode != "copy":
        raise SortError("--blur-humans applies to copies only (use --mode copy); originals are never modified")
    try:
        table = read_table(results)
    except (ValueError, OSError, LookupError, zipfile.BadZipFile) as err:  # a damaged or foreign file
        raise SortError(f"{results}: cannot read it as a result table ({err})") from None
    missing_cols = {"filename", "prediction"} - set(table.columns)
    if missing_cols:
        raise SortError(f"{results}: not a deepfaune result table (missing column(s) "
                        f"{', '.join(sorted(missing_cols))})")
    standin = STANDIN_COLUMN in table.columns and bool((table[STANDIN_COLUMN] == STANDIN_VALUE).any())
    rows = table.to_dict("records")
    note = ""
    if root:
        candidates = [(Path(root), "given with --root")]
    else:
        candidates = [(results.parent, "the folder of the table")]
        record_root, note = _record_root(results)
        if record_root is not None:
            candidates.append((record_root, note))
            note = ""
    best = None
    for candidate, why in candidates:
        checked = _check_rows(rows, candidate, results, blur_humans, mode)
        if best is None or len(checked[2]) < len(best[2][2]):
            best = (candidate, why, checked)
        if not checked[2] and not checked[1]:
            break
    assert best is not None
    chosen, reason, (ok, refused, missing, skipped) = best
    if refused:
        raise SortError(f"{results}: {len(refused)} row(s) refused, nothing was sorted: {_listed(refused)}")
    if missing and not skip_missing:
        tried = " nor ".join(str(c) for c, _why in candidates)
        raise SortError(f"{results}: {len(missing)} of {len(missing) + len(ok)} files it names are not under "
                        f"{tried} (first: {_listed(missing)}); nothing was sorted. Give --root the folder the "
                        "table's filenames are relative to (the folder `deepfaune run` was given), or "
                        "--skip-missing to sort the others" + (f" ({note})" if note else ""))
    skipped += [(rel, f"not found under {chosen}; not sorted") for rel in missing]
    plans = _layout(ok, flat)
    stamp = (now or datetime.now()).strftime("%d-%m-%Y_%H-%M-%S")
    folder = _new_folder(Path(dest), stamp)
    report = SortReport(folder=folder, failures=skipped, root=Path(os.path.abspath(chosen)),
                        mapping=folder / MAPPING_NAME, root_reason=reason)
    _place_all(plans, folder, mode, report, standin)
    return report


def _mapping_row(plan: _Planned, placed: Path, how: str) -> list[str]:
    st = os.stat(placed, follow_symlinks=False)
    return [os.path.abspath(plan.source), plan.destination, plan.label, how, str(st.st_size), str(st.st_mtime_ns)]


def _records_dir() -> Path:
    """The user's own folder of sort records (0700: another account cannot plant one)."""
    from .models.installed import user_cache_dir

    folder = user_cache_dir() / "sorts"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def _record(data: bytes, root: Path, folders: list[Path]) -> str:
    """Record that a sort of this user wrote a mapping of these bytes, from `root`, in one of `folders`.

    A digest in the user's own folder rather than a signature beside the mapping: no key to keep secret or to
    lose, the sorted folder holds only what it always held, and a mapping anyone edits or sends is simply
    not recorded. The root is kept as the sort named it and as it resolved then, so that a root (or a folder
    in it) swapped for a link afterwards is seen.
    """
    digest = hashlib.sha256(data).hexdigest()
    record = {"format": SORT_RECORD_FORMAT, "sha256": digest, "root": os.path.abspath(root),
              "real_root": str(Path(root).resolve()), "folders": [str(Path(f).resolve()) for f in folders]}
    write_bytes_atomic(_records_dir() / f"{digest}.json", json.dumps(record, indent=1).encode("utf-8"))
    return digest


def record_mapping(mapping: Path, root: Path, folders: list[Path]) -> str:
    """Record `mapping` (as it is now) as written by a sort of this user from `root` into one of `folders`."""
    return _record(Path(mapping).read_bytes(), root, folders)


def _recorded(digest: str) -> dict | None:
    path = _records_dir() / f"{digest}.json"
    try:
        record = parse_json(path.read_bytes(), str(path))
    except (OSError, ValueError):
        return None
    keys = ("root", "real_root", "folders")
    if not (isinstance(record, dict) and record.get("format") == SORT_RECORD_FORMAT and record.get("sha256") == digest
            and all(k in record for k in keys) and isinstance(record["folders"], list)):
        return None
    return record


def _forget(digest: str | None) -> None:
    if digest:
        try:
            (_records_dir() / f"{digest}.json").unlink(missing_ok=True)
        except OSError:
            pass  # a record left behind only lets that exact mapping be undone


def _write_mapping(path: Path, rows: list[list[str]], root: Path, folders: list[Path], standin: bool = False) -> str:
    """Write the mapping (all or nothing), recorded before it appears; its digest. A stand-in run's (`standin`)
    ends with the result table's STANDIN_COLUMN (undo reads the columns it knows, whatever follows them)."""
    mark = [STANDIN_VALUE] if standin else []
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(list(MAPPING_COLUMNS) + ([STANDIN_COLUMN] if standin else []))
    writer.writerows([escape_formula(v) for v in row + mark] for row in rows)
    data = text.getvalue().encode("utf-8")
    digest = _record(data, root, folders)
    try:
        write_bytes_atomic(path, data)
    except BaseException:
        _forget(digest)
        raise
    return digest


def _place_all(plans: list[_Planned], folder: Path, mode: str, report: SortReport, standin: bool = False) -> None:
    """Build the sorted tree in a hidden folder beside `folder`, then rename it into place.

    A move is journalled first (the mapping, written before any file moves), so even a killed sort can be
    undone from the hidden folder's mapping; an error puts back what was moved and removes the folder.
    """
    work = staging_dir(folder)
    root = report.root
    assert root is not None
    moved: list[tuple[Path, Path]] = []
    rows: list[list[str]] = []
    journal = None
    try:
        if mode == "move":
            journal = _write_mapping(work / MAPPING_NAME, [[os.path.abspath(p.source), p.destination, p.label,
                                                            "move", "", ""] for p in plans],
                                     root, [work, folder], standin)
        for plan in plans:
            target = work / plan.destination
            target.parent.mkdir(parents=True, exist_ok=True)
            if plan.boxes:
                try:
                    _write_blurred(plan.source, target, plan.boxes)
                except MediaError as err:  # never an unblurred copy of a person: left out, said
                    report.failures.append((plan.relpath, str(err)))
                    continue
                how = "blur"
            elif mode == "move":
                shutil.move(str(plan.source), str(target))
                moved.append((target, plan.source))
                how = "move"
            else:
                how = place_file(plan.source, target, link=mode == "link")
            rows.append(_mapping_row(plan, target, how))
            report.done += 1
        final = _write_mapping(work / MAPPING_NAME, rows, root, [work, folder], standin)
        if journal != final:
            _forget(journal)
        journal = final
        os.rename(work, folder)
    except OSError as err:
        back = _put_back(moved)
        said = f"; the {len(moved)} file(s) moved so far were put back" if moved and not back else ""
        if back:  # files that could not go back stay in the hidden folder, with the journal to undo it
            kept = (f"; could not put back {_listed(back)}: they are in {work}, undo with deepfaune sort --undo "
                    f"{work / MAPPING_NAME}")
        else:
            kept = ""
            shutil.rmtree(work, ignore_errors=True)
            _forget(journal)
        raise SortError(f"cannot sort into {folder}: {err}{said}{kept}; nothing was sorted") from err


def _put_back(moved: list[tuple[Path, Path]]) -> list[str]:
    """Move files back where they came from (last first); the ones that cannot be, named."""
    failed = []
    for placed, original in reversed(moved):
        try:
            original.parent.mkdir(parents=True, exist_ok=True)
            if original.exists() or original.is_symlink():
                raise FileExistsError(original)
            shutil.move(str(placed), str(original))
        except OSError as err:
            failed.append(f"{placed} -> {original} ({err})")
    return failed


# ---------------------------------------------------------------- undo

@dataclass
class UndoReport:
    folder: Path
    restored: int = 0  # moved files put back
    removed: int = 0  # copies and links we made, removed
    already: int = 0  # rows an earlier undo did
    kept: list[tuple[str, str]] = field(default_factory=list)  # (destination, why it stays)


def _read_mapping(mapping: Path) -> tuple[bytes, dict]:
    """The mapping's bytes and the record of the sort of this user that wrote them, or SortError."""
    try:
        with open(mapping, "rb") as fh:
            data = fh.read(MAX_MAPPING_BYTES + 1)
    except FileNotFoundError:
        raise SortError(f"{mapping}: no such mapping (the {MAPPING_NAME} a sort writes in its folder)") from None
    except OSError as err:
        raise SortError(f"{mapping}: cannot read it as a sort mapping ({err.strerror or err})") from None
    if len(data) > MAX_MAPPING_BYTES:
        raise SortError(f"{mapping}: larger than {MAX_MAPPING_BYTES} bytes, not a sort mapping; nothing undone")
    record = _recorded(hashlib.sha256(data).hexdigest())
    if record is None:
        raise SortError(f"{mapping}: no sort of yours wrote this mapping (none recorded in {_records_dir()} has "
                        "these contents: it was changed since, or made by someone else); nothing undone")
    here = str(mapping.parent.resolve())
    if here not in record["folders"]:
        raise SortError(f"{mapping}: was written in {record['folders'][-1]}, not here; undo it there (move the "
                        "folder back if you moved it); nothing undone")
    return data, record


def _source_in_root(source: str, root: Path) -> Path:
    """`source` (a mapping's absolute path) as a path inside `root` once links are resolved, or ValueError."""
    rel = os.path.relpath(source, root) if os.path.isabs(source) else ""
    if not rel or rel == os.curdir or rel.split(os.sep)[0] == os.pardir:
        raise ValueError(f"source {source} is not inside {root}, the root the sort recorded")
    try:
        return safe_relative(root, rel)
    except UnsafePathError as err:
        raise ValueError(f"source {rel} {err.reason}") from None


def _checked_entries(mapping: Path, data: bytes, record: dict) -> list[tuple[Path, Path, str, str, str, str]]:
    """Every row of the mapping, checked whole: each one must take a media file from inside the sorted folder
    back to inside the root the sort recorded, no two rows the same file; else SortError naming the rows."""
    try:
        rows = [[unescape_formula(v) for v in row] for row in csv.reader(io.StringIO(data.decode("utf-8"), newline=""))]
    except (UnicodeDecodeError, csv.Error) as err:
        raise SortError(f"{mapping}: cannot read it as a sort mapping ({err}); nothing undone") from None
    if not rows or tuple(rows[0][:len(MAPPING_COLUMNS)]) != MAPPING_COLUMNS:
        raise SortError(f"{mapping}: not a sort mapping (its header must be {','.join(MAPPING_COLUMNS)})")
    root, folder = Path(record["root"]), mapping.parent
    problems, entries = [], []
    if str(root.resolve()) != record["real_root"]:
        problems.append(f"the root {root} now leads to {root.resolve()}, not to {record['real_root']} as when sorted")
    sources: dict[str, int] = {}
    destinations: dict[str, int] = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) < len(MAPPING_COLUMNS):
            problems.append(f"row {n}: {len(row)} values for {len(MAPPING_COLUMNS)} columns")
            continue
        source, destination, _label, how, size, mtime = row[:len(MAPPING_COLUMNS)]
        try:
            if how not in ("move", "copy", "link", "blur"):
                raise ValueError(f"mode {how!r} is not one a sort writes")
            original = _source_in_root(source, root)
            if _not_media(source):
                raise ValueError(f"source {source} is not a photo or video")
            try:
                placed = safe_relative(folder, destination)
            except UnsafePathError as err:
                raise ValueError(f"destination {destination!r} refused: {err.reason}") from None
            if _not_media(destination):
                raise ValueError(f"destination {destination} is not a photo or video")
            for shown, key, seen in ((f"source {source}", os.path.abspath(source), sources),
                                     (f"destination {destination}", str(placed).casefold(), destinations)):
                if key in seen:
                    raise ValueError(f"{shown} is also row {seen[key]}'s")
                seen[key] = n
        except ValueError as err:
            problems.append(f"row {n}: {err}")
            continue
        entries.append((original, placed, destination, how, size, mtime))
    if problems:
        raise SortError(f"{mapping}: {_listed(problems)}; nothing undone")
    return entries


def undo_sort(mapping: Path) -> UndoReport:
    """Put moved files back and remove the copies and links a sort made, from its mapping.

    Only a mapping a sort of this user wrote, where it wrote it, unchanged since (its recorded sha256), is
    followed, and only once every row is checked (`_checked_entries`): a file goes back only to where the sort
    took it from. Nothing a person changed is removed: a copy whose size or modification time differs from
    what the sort wrote stays (and is named), a link is removed only while its original still exists, and a
    file is never moved onto an existing one. Folders left empty are removed; the mapping too when all is
    undone.
    """
    mapping = Path(mapping)
    if mapping.is_dir():
        mapping = mapping / MAPPING_NAME
    data, record = _read_mapping(mapping)
    entries = _checked_entries(mapping, data, record)
    root, folder = Path(record["root"]), mapping.parent
    report = UndoReport(folder=folder)
    for source, placed, destination, how, size, mtime in entries:
        present = os.path.lexists(placed) if how == "move" else placed.is_file() and not placed.is_symlink()
        if not present:
            if how == "move" and source.is_file():
                report.already += 1
            elif how != "move":
                report.already += 1
            else:
                report.kept.append((destination, f"neither here nor at {source}"))
            continue
        try:
            if how == "move":
                if source.exists() or source.is_symlink():
                    report.kept.append((destination, f"{source} exists again; not moved over it"))
                    continue
                try:  # again, just before: a folder of the root swapped for a link since the check
                    _source_in_root(str(source), root)
                except ValueError as err:
                    report.kept.append((destination, str(err)))
                    continue
                source.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(placed), str(source))
                report.restored += 1
            elif how == "link":
                if not (source.is_file() and os.path.samefile(source, placed)):
                    report.kept.append((destination, f"its original {source} is gone or replaced; this is now "
                                                     "the only copy"))
                    continue
                placed.unlink()
                report.removed += 1
            else:
                st = placed.stat()
                if (str(st.st_size), str(st.st_mtime_ns)) != (size, mtime):
                    report.kept.append((destination, "changed since the sort; kept"))
                    continue
                placed.unlink()
                report.removed += 1
        except OSError as err:
            report.kept.append((destination, str(err.strerror or err)))
    if not report.kept:
        mapping.unlink(missing_ok=True)
        _forget(hashlib.sha256(data).hexdigest())
    _remove_empty_folders(folder)
    return report


def _remove_empty_folders(folder: Path) -> None:
    """The folders of a sorted tree that hold nothing any more (the tree's own folder included)."""
    for dirpath, _dirnames, _files in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass  # not empty: something stays
