"""Host adapter for Timelapse (Saul Greenberg, University of Calgary): DeepFaune inside a Timelapse image set.

`deepfaune run <root>` on a folder holding TimelapseData.ddb processes exactly the files the
database lists, forms DeepFaune's sequences within each RelativePath (the .ddb's DateTime stands
in when a file has no EXIF date) and writes a recognition file Timelapse imports
(deepfaune-recognitions.json).  With --write-ddb the same recognitions go straight into the
.ddb, as Timelapse's own import would store them, after a backup in Backups/.  With
--use-existing-detections no detector runs: the boxes already in the .ddb (MegaDetector's) are
classified, as DeepFaune classifies a MegaDetector file.

Most users run the AI before Timelapse ever opened the folder: a folder of images without a .ddb
(with a TimelapseTemplate.tdb it is recognised by --host auto; without one, --host timelapse)
gets the same recognition file, listing the files Timelapse will load there (.jpg/.jpeg images,
.asf/.avi/.mov/.mp4 videos) by their path below the folder, and the run says what to do next
in Timelapse.
"""
from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from deepfaune_plugin.api import (EXISTING_DETECTIONS, HUMAN_FIELDS, FolderLock, Host, HostOption, Manifest, MediaItem,
                                  Problem, RunResults, UnsafePathError, atomic_output, fields_given, fields_note,
                                  hookimpl, iter_media, not_regular, result_table, safe_relative, say, write_table)

from deepfaune_plugin.hooks.timelapse.ddb import (DEFAULT_DDB, DataRow, FieldSpec, TimelapseError, find_ddb, find_template, read_ddb,
                            windows_to_posix)
from deepfaune_plugin.hooks.timelapse.existing import ExistingDetections, describe_existing, ids_written, read_existing, record_written
from deepfaune_plugin.hooks.timelapse.existing import notes as existing_notes
from deepfaune_plugin.hooks.timelapse.existing import summary as existing_summary
from deepfaune_plugin.hooks.timelapse.recognitions import (FLAG_FALSE, FLAG_TRUE, ImportReport, check_field, check_flag,
                                                           check_people_field, default_flag, write_ddb)
from deepfaune_plugin.hooks.timelapse.fields import field_values
from deepfaune_plugin.hooks.timelapse.labels import read_labels
from deepfaune_plugin.hooks.timelapse.md_json import build_recognitions
from deepfaune_plugin.hooks.timelapse.ledger import read_ledger, write_ledger

DEFAULT_JSON = "deepfaune-recognitions.json"
DEFAULT_WAIT = 30.0
TABLE_SUFFIXES = (".csv", ".xlsx")  # --output with these names: DeepFaune's result table, besides the JSON
#: What Timelapse loads from an image set's folder tree (its FilesFolders: images and videos).
TIMELAPSE_MEDIA = frozenset({".jpg", ".jpeg", ".asf", ".avi", ".mov", ".mp4"})
#: The option naming the data field for each thing a person records besides the label (HUMAN_FIELDS).
PEOPLE_OPTIONS = {name: f"{name.replace('_', '-')}-field" for name in HUMAN_FIELDS}


@dataclass
class TimelapseState:
    """What read() learnt and write() needs; `report` is filled by write() when the .ddb is written."""

    ddb: Path | None  # None: a folder Timelapse has not opened yet (recognition file only)
    version: str
    rows: dict[str, list[DataRow]]
    field_spec: FieldSpec | None = None
    report: ImportReport | None = None
    recognitions: Path | None = None
    notes: list[str] = field(default_factory=list)
    existing: ExistingDetections | None = None  # --use-existing-detections: the boxes read from the .ddb
    reviewed_spec: FieldSpec | None = None  # the Flag field set on the files a person labelled (deepfaune review)
    people_specs: dict[str, FieldSpec] = field(default_factory=dict)  # count, sex... -> the field holding it


def _opt(options: Mapping[str, Any], name: str, default=None):
    value = options.get(name)
    return default if value is None else value


class TimelapseHost(Host):
    name = "timelapse"
    description = ("a Timelapse image set (folder with TimelapseData.ddb); writes a recognition file Timelapse "
                   "imports, or with --write-ddb the recognitions straight into the .ddb")
    priority = 10
    labels_held = "name the data field holding them with --labels-field"
    options: tuple[HostOption, ...] = (
        HostOption("write-ddb", "also store the recognitions in the .ddb as Timelapse's import would "
                                "(backup in Backups/ first; one transaction)", flag=True, default=False,
                   from_record=True),
        HostOption("field", "with --write-ddb: put each file's sequence-level label in this data field "
                            "(a Note, or a FixedChoice whose choices hold the labels; a scientificName or latin-name "
                            "field gets scientific names); only empty or template-default values are filled",
                   from_record=True),
        HostOption("reviewed-field", "with --write-ddb: the Flag field set to true on the files a person labelled "
                                     "in deepfaune review (back to false when the label is withdrawn; a flag a "
                                     "person set in Timelapse is kept); default: the template's Flag field named "
                                     "Reviewed, if any", from_record=True),
        HostOption("labels-field", "the data field holding people's species labels (e.g. Species): what "
                                   "deepfaune evaluate and the review page's evaluation compare DeepFaune's labels "
                                   "with (labels in any language of the model, or scientific names)",
                   commands=("run", "review", "evaluate"), from_record=True),
        *(HostOption(option, f"with --write-ddb: the data field that gets the {name.replace('_', ' ')} a person "
                             "recorded in deepfaune review (or --import); only empty or template-default values "
                             "are filled", commands=("run", "review"), from_record=True)
          for name, option in PEOPLE_OPTIONS.items()),
        HostOption("per-image", "label each box with its own image's answer instead of its sequence's",
                   flag=True, default=False, from_record=True),
        HostOption("ddb", "the .ddb file to use when the folder holds several"),
        HostOption("ddb-wait", f"seconds to wait for a locked .ddb (default {DEFAULT_WAIT:g})"),
        HostOption("use-existing-detections", "classify the boxes of the recognitions already in the .ddb (e.g. "
                                              "MegaDetector's) instead of running a detector (detector mode "
                                              "'existing')", flag=True, default=False, from_record=True),
    )

    def detect(self, source: Path) -> bool:
        """A .ddb, or a folder holding one or a Timelapse template (an image set not yet opened)."""
        return find_ddb(Path(source)) is not None or find_template(Path(source)) is not None

    def _ddb(self, source: Path, options: Mapping[str, Any]) -> Path:
        chosen = options.get("ddb")
        if chosen:
            path = Path(chosen)
            if not path.is_absolute() and Path(source).is_dir():
                path = Path(source) / path
            return path
        found = find_ddb(source)
        if found is None:
            if Path(source).is_dir() and len(list(Path(source).glob("*.ddb"))) > 1:
                raise TimelapseError(f"{source}: several .ddb files; choose one with --ddb")
            raise TimelapseError(f"{source}: no Timelapse data file ({DEFAULT_DDB}) here")
        return found

    def labels_unwritten(self, options: Mapping[str, Any]) -> str | None:
        if options.get("write_ddb"):
            return None
        return ("Timelapse shows a label only once it is in the .ddb: add --write-ddb (and --field NAME to put "
                "the labels into a data field)")

    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        source = Path(source)
        field_name = options.get("field")
        if field_name and not options.get("write_ddb"):
            raise TimelapseError("--field fills a data field of the .ddb: add --write-ddb")
        flag_name = options.get("reviewed_field")
        if flag_name and not options.get("write_ddb"):
            raise TimelapseError("--reviewed-field sets a Flag field of the .ddb: add --write-ddb")
        output = options.get("output")
        if output is not None and Path(output).suffix.lower() not in (".json", *TABLE_SUFFIXES):
            raise TimelapseError(f"--output {output}: name a .json file (the recognition file) or a .csv/.xlsx "
                                 "file (DeepFaune's result table, written besides the recognition file)")
        if _not_opened_yet(source, options):
            return _read_folder(source, options)
        ddb = self._ddb(source, options)
        wait = _wait(options)  # a bad value fails now, not after hours of inference
        contents = read_ddb(ddb, timeout=wait)
        spec = check_field(contents.fields, field_name) if field_name else None
        flag = check_flag(contents.fields, flag_name) if flag_name else (
            default_flag(contents.fields) if options.get("write_ddb") else None)
        if flag is not None and spec is not None and flag.data_label == spec.data_label:
            raise TimelapseError(f"--reviewed-field {flag.data_label} is also the --field: choose another Flag field")
        people = _people_specs(contents.fields, options, [s for s in (spec, flag) if s is not None])
        existing = _existing(ddb, wait) if options.get("use_existing_detections") else None
        root = ddb.parent
        by_relpath: dict[str, list[DataRow]] = {}
        problems: list[Problem] = []
        for row in contents.rows:
            if not row.file:
                problems.append(Problem(f"DataTable row {row.id}", f"{ddb.name}: row without a file name"))
                continue
            by_relpath.setdefault(row.relpath, []).append(row)
        items = []
        for relpath, rows in sorted(by_relpath.items()):
            try:  # a RelativePath with "..", a drive or an absolute path never leaves the image set
                path = safe_relative(root, relpath, manifest=ddb)
            except UnsafePathError as err:
                problems.append(Problem(relpath, f"refused: {err.reason}"))
                continue
            why = not_regular(path)  # only regular files are media: a FIFO would hang the run
            if why:
                problems.append(Problem(relpath, f"listed in {ddb.name} but missing on disk" if why == "no such file"
                                        else f"{why}; skipped"))
                continue
            folder = windows_to_posix(rows[0].relative_path) or "."
            ids = tuple(r.id for r in rows)
            items.append(MediaItem(path=path, relpath=relpath, group=folder, timestamp=rows[0].date_time,
                                   host_key=ids, known_boxes=existing.boxes_for(ids) if existing else None))
        state = TimelapseState(ddb=ddb, version=contents.version, rows=by_relpath, field_spec=spec, existing=existing,
                               reviewed_spec=flag, people_specs=people)
        labels: dict[str, str] = {}
        if options.get("labels_field"):  # people's labels: for evaluations, never written
            labels, notes = read_labels(ddb, str(options["labels_field"]), contents.fields, by_relpath, wait)
            problems.extend(notes)
        if existing is not None:
            say(f"timelapse: {existing_summary(existing, ddb.name)}")
            problems.extend(Problem(ddb.name, note, skipped=0) for note in existing_notes(existing))
        return Manifest(root=root, items=items, problems=problems, host=self.name, host_state=state,
                        detector_mode=EXISTING_DETECTIONS if existing is not None else None,
                        human_labels=labels)

    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        if not options.get("write_ddb"):
            return self._write(manifest, results, options)
        # the recognition file, the .ddb and its ledger change together: a second run in between would read a
        # ledger without this one's values and lose them (SQLite keeps the .ddb itself consistent)
        ddb = manifest.host_state.ddb
        with FolderLock(ddb.with_name(f".{ddb.name}.deepfaune.lock"), str(ddb), wait=_wait(options)) as lock:
            if lock.note:
                manifest.host_state.notes.append(lock.note)
            return self._write(manifest, results, options)

    def _write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        state: TimelapseState = manifest.host_state
        level = "image" if options.get("per_image") else "sequence"
        recognitions = build_recognitions(manifest, results, level=level)
        if state.existing is not None:
            describe_existing(recognitions["info"], state.existing)
        target, table = manifest.root / DEFAULT_JSON, None
        if options.get("output") is not None:
            output = Path(options["output"])
            if output.suffix.lower() in TABLE_SUFFIXES:  # DeepFaune's own table was asked for: give it too
                table = output
            else:
                target = output
        # the recognition file is put in place only once the .ddb took it: a refused write ("nothing was
        # changed") leaves the previous file (and table) as they were
        with atomic_output(target) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(recognitions, fh, indent=1, ensure_ascii=False)
            report = None
            if options.get("write_ddb"):
                with open(tmp, encoding="utf-8") as fh:  # exactly what Timelapse would read from the file
                    as_read = json.load(fh)
                report = self._write_ddb(state, manifest, results, as_read, options)
        state.recognitions = target
        written = [target] + ([write_table(result_table(results), table)] if table is not None else [])
        held = {name: f"field {spec.data_label}" for name, spec in state.people_specs.items()} if report else {}
        state.notes.extend(line.removeprefix("timelapse: ") for line in fields_note(
            "timelapse", fields_given(results.decisions), held,
            {name: f"name one with --{option}" + ("" if options.get("write_ddb") else " and --write-ddb")
             for name, option in PEOPLE_OPTIONS.items()}))
        if report is None:  # the import in Timelapse is the user's next step
            state.notes.extend(_next_steps(manifest.root, target, opened=state.ddb is not None))
        else:
            state.notes.extend(_notes(report, state))
            written.append(state.ddb)
        for note in state.notes:
            say(f"timelapse: {note}")
        return written

    @staticmethod
    def _write_ddb(state: TimelapseState, manifest: Manifest, results: RunResults, as_read: Mapping[str, Any],
                   options: Mapping[str, Any]) -> ImportReport:
        spec = state.field_spec
        chosen = field_values(spec, results.decisions, results.classes, results.settings.lang) if spec else None
        values = chosen.values if chosen else None
        if chosen is not None:
            _refuse_unwritable_reviews(spec, chosen.no_choice, results)
        if chosen is not None and chosen.no_taxon:
            labels = ", ".join(sorted(set(chosen.no_taxon.values())))
            state.notes.append(f"field {spec.data_label} holds scientific names: {len(chosen.no_taxon)} file(s) "
                               f"labelled {labels} (no taxon) left as they are")
        # the values DeepFaune wrote into the field last time: a re-run may refresh them
        previous = {rid: str(v) for rid, v in read_ledger(state.ddb, spec.data_label).items()} if spec else {}
        flag = _reviewed_flag(state, results)
        people = [(pspec, _people_values(name, results), {rid: str(v) for rid, v in
                                                          read_ledger(state.ddb, pspec.data_label).items()})
                  for name, pspec in state.people_specs.items()]
        report = write_ddb(state.ddb, as_read, field_spec=spec, field_values=values,
                           previous=previous, wait=_wait(options), flag=flag, people=people)
        state.report = report
        if spec is not None:
            kept = {k: v for k, v in previous.items() if k not in report.field_kept_ids}
            write_ledger(state.ddb, spec.data_label, {**kept, **report.field_values})
        if flag is not None:
            kept = {k: v for k, v in flag[2].items() if k not in report.flag.field_kept_ids}
            write_ledger(state.ddb, flag[0].data_label, {**kept, **report.flag.field_values})
        for pspec, _, earlier in people:
            done = report.people[pspec.data_label]
            kept = {k: v for k, v in earlier.items() if k not in done.field_kept_ids}
            write_ledger(state.ddb, pspec.data_label, {**kept, **done.field_values})
        try:  # which rows DeepFaune's own detector wrote: --use-existing-detections must not take them
            record_written(state.ddb, ids_written(manifest.items, results.raw), results.settings.detector_mode,
                           timeout=_wait(options))
        except (OSError, sqlite3.Error) as err:
            state.notes.append(f"could not note which recognitions DeepFaune wrote ({err}); a later "
                               "--use-existing-detections may take them for another detector's")
        return report


def _people_specs(fields: Mapping[str, FieldSpec], options: Mapping[str, Any],
                  taken: list[FieldSpec]) -> dict[str, FieldSpec]:
    """count, sex... -> the data field named for it (--count-field...), checked; none twice, none the --field or
    the --reviewed-field."""
    out: dict[str, FieldSpec] = {}
    used = {s.data_label: "--field or --reviewed-field" for s in taken}
    for name, option in PEOPLE_OPTIONS.items():
        chosen = options.get(option.replace("-", "_"))
        if not chosen:
            continue
        if not options.get("write_ddb"):
            raise TimelapseError(f"--{option} fills a data field of the .ddb: add --write-ddb")
        spec = check_people_field(fields, option, str(chosen), name)
        if spec.data_label in used:
            raise TimelapseError(f"--{option} {spec.data_label} is also the {used[spec.data_label]}: choose another field")
        used[spec.data_label] = f"--{option}"
        out[name] = spec
    return out


def _people_values(name: str, results: RunResults) -> dict[str, str]:
    """relpath -> what a person recorded as `name` (count, sex...); "" where nothing (a value DeepFaune wrote
    there before, since withdrawn, goes back to the template's default)."""
    return {d.relpath: d.human.fields.text(name) if d.human is not None else ""
            for d in results.decisions if not d.failure}


def _refuse_unwritable_reviews(spec: FieldSpec, no_choice: Mapping[str, str], results: RunResults) -> None:
    """A label given in `deepfaune review` that the field cannot hold refuses the write: marking the file
    Reviewed while its field keeps another value would look like a person confirmed that value."""
    reviewed = {d.relpath for d in results.decisions if d.human is not None}
    refused = {rel: label for rel, label in no_choice.items() if rel in reviewed}
    if refused:
        rel, label = sorted(refused.items())[0]
        raise TimelapseError(f"--field {spec.data_label}: the label {label!r} given in deepfaune review "
                             f"({len(refused)} file(s), e.g. {rel}) is not one of the field's choices "
                             f"({', '.join(spec.choices) or 'none'}) in any language; nothing was changed: add it to "
                             "the field's choices in Timelapse's template editor, or give those files another label")


def _reviewed_flag(state: TimelapseState, results: RunResults) -> tuple[FieldSpec, dict[str, str], dict[int, str]] | None:
    """(the reviewed Flag field, relpath -> its value, what DeepFaune wrote there last time) for write_ddb: "true"
    for each file a person labelled, "false" again where DeepFaune set it and the label has been withdrawn."""
    reviewed = {d.relpath for d in results.decisions if d.human is not None}
    spec = state.reviewed_spec
    if spec is None:
        if reviewed:
            state.notes.append(f"{len(reviewed)} file(s) have a label from deepfaune review (written into the "
                               "--field data field, if any; the recognitions keep DeepFaune's own); the template has "
                               "no Flag field named Reviewed to mark them: add one in Timelapse's template editor, "
                               "or choose a Flag field with --reviewed-field")
        return None
    previous = {rid: str(v) for rid, v in read_ledger(state.ddb, spec.data_label).items()}
    ours = {rid for rid, v in previous.items() if v == FLAG_TRUE}
    values: dict[str, str] = {}
    for d in results.decisions:
        if d.relpath in reviewed:
            values[d.relpath] = FLAG_TRUE
        elif any(row.id in ours for row in state.rows.get(d.relpath, ())):
            values[d.relpath] = FLAG_FALSE
    return spec, values, previous


def _not_opened_yet(source: Path, options: Mapping[str, Any]) -> bool:
    """A folder without any .ddb (and no --ddb named): Timelapse has not opened it yet."""
    return source.is_dir() and not options.get("ddb") and not any(p.is_file() for p in source.glob("*.ddb"))


def _read_folder(root: Path, options: Mapping[str, Any]) -> Manifest:
    """The files Timelapse will load from `root`, for a recognition file made before Timelapse opens it."""
    for option in ("write_ddb", "use_existing_detections"):
        if options.get(option):
            raise TimelapseError(
                f"{root}: --{option.replace('_', '-')} needs the image set's {DEFAULT_DDB}, and Timelapse has not "
                "opened this folder yet. Run without it to get the recognition file, open the folder in Timelapse, "
                "then use its \"Import recognition data\" command; or open the folder in Timelapse first")
    problems: list[Problem] = []
    items = [MediaItem(path=path, relpath=rel, group=str(Path(rel).parent.as_posix()))
             for path, rel in iter_media(root, TIMELAPSE_MEDIA, problems=problems)]
    if not items:
        raise TimelapseError(f"{root}: no file Timelapse loads here (.jpg, .jpeg, .asf, .avi, .mov, .mp4)")
    state = TimelapseState(ddb=None, version="", rows={}, notes=[])
    if find_template(root) is None:
        state.notes.append(f"{root} holds no Timelapse template (.tdb): Timelapse asks for one when it opens the "
                           "folder; the recognition file does not depend on it")
    return Manifest(root=root, items=items, problems=problems, host="timelapse", host_state=state)


def _next_steps(root: Path, target: Path, opened: bool = False) -> list[str]:
    """What the user does in Timelapse with the file just written (printed after the run)."""
    if opened:
        where = "(it already knows this image set)"
    else:
        template = find_template(root)
        where = (f"with its template {template.name}" if template else "with a template (.tdb) saved in that "
                 "folder") + " (File > Load template, images and videos...)"
    return [f"next, in Timelapse: open the image set {root} {where}, "
            f"then File > Import recognition data... and choose {target}"
            + ("" if target.parent == root else
               " (the file's paths are relative to the image set's folder, whatever folder the file is in)")]


def _existing(ddb: Path, wait: float) -> ExistingDetections:
    existing = read_existing(ddb, timeout=wait)
    if not existing.boxes:
        raise TimelapseError(
            f"{ddb}: --use-existing-detections, but the database holds no image recognitions from another detector"
            + (f" (those of {existing.own_rows} file(s) were written by DeepFaune's own detector)"
               if existing.own_rows else "")
            + ": import MegaDetector's results in Timelapse first, or run without --use-existing-detections")
    return existing


def _wait(options: Mapping[str, Any]) -> float:
    raw = _opt(options, "ddb_wait", DEFAULT_WAIT)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise TimelapseError(f"--ddb-wait: expected a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:  # nan compared as neither, inf would wait for ever
        raise TimelapseError(f"--ddb-wait: expected a number of seconds >= 0, got {raw!r}")
    return value


def _notes(report: ImportReport, state: TimelapseState) -> list[str]:
    notes = [f"{report.detections} recognition rows for {report.images} files written to {state.ddb.name}"
             + (" (merged with the recognitions already there)" if report.merged else "")
             + (f"; backup: {report.backup}" if report.backup else "")]
    if report.failed_kept:
        notes.append(f"{len(report.failed_kept)} file(s) could not be processed and keep their earlier recognitions, "
                     f"e.g. {report.failed_kept[0]}")
    if report.unmatched:
        notes.append(f"{len(report.unmatched)} file(s) no longer in {state.ddb.name}, skipped, e.g. {report.unmatched[0]}")
    if state.field_spec is not None:
        notes.append(f"field {state.field_spec.data_label}: {report.field_written} row(s) set")
        if report.field_rejected:
            labels = sorted({label for _, label in report.field_rejected})
            notes.append(f"field {state.field_spec.data_label}: {len(report.field_rejected)} file(s) not given their "
                         f"label, which is not one of the field's choices ({', '.join(state.field_spec.choices)}) in "
                         f"any language: {', '.join(labels)}")
        if report.field_kept:
            notes.append(f"field {state.field_spec.data_label}: {len(report.field_kept)} value(s) typed by a person kept, "
                         f"e.g. {report.field_kept[0][0]}: {report.field_kept[0][1]!r}")
    for name, spec in state.people_specs.items():
        done = report.people.get(spec.data_label)
        if done is None:
            continue
        if done.field_rejected:
            values = sorted({value for _, value in done.field_rejected})
            notes.append(f"field {spec.data_label}: {len(done.field_rejected)} file(s) not given the "
                         f"{name.replace('_', ' ')} a person recorded, which is not one of the field's choices "
                         f"({', '.join(spec.choices)}): {', '.join(values)}")
        if done.field_kept:
            notes.append(f"field {spec.data_label}: {len(done.field_kept)} value(s) typed by a person in Timelapse "
                         f"kept, e.g. {done.field_kept[0][0]}: {done.field_kept[0][1]!r}")
    if report.flag is not None and report.flag.field_values:
        marked = sum(v == FLAG_TRUE for v in report.flag.field_values.values())
        notes.append(f"flag {state.reviewed_spec.data_label}: {marked} row(s) marked as labelled in deepfaune review")
    return notes


@hookimpl
def register_hosts(register):
    register(TimelapseHost())
