"""Host adapter for camtrapR (R): reads a station tree or a record table, writes camtrapR's record table.

`deepfaune run SOURCE --host camtrapr` where SOURCE is camtrapR's inDir (Station/[Camera/]files)
or a record-table CSV (Directory, FileName, Station columns).  The output is a record table in
recordTable()'s column names, order and formats, filtered for temporal independence exactly as
recordTable() does it (see camtrapr_independence), so that cameraOperation(), detectionHistory(),
surveyReport(), activityDensity() and filterRecordTable() take it after a plain read.csv().
Optionally: a camera-trap table and the species folder tree recordTable(IDfrom = "directory") reads.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Mapping

from deepfaune_plugin.api import (FILE_DATE, HUMAN_FIELDS, AnimalDecision, Decision, Host, HostError, HostOption,
                                  Manifest, RunResults, animals_by_file, fields_given, fields_note, hookimpl,
                                  label_text, say, taxon_for_key)

from deepfaune_plugin.hooks.camtrapr.independence import COMPARED_TO, LAST_INDEPENDENT, assess
from deepfaune_plugin.hooks.camtrapr.output import (
    BESIDE_BOXES, NON_ANIMAL_KEYS, Image, camera_table, record_rows, select, species_records, to_record, write_csv,
)
from deepfaune_plugin.hooks.camtrapr.species import build_species_tree, check_species_root, warn_notes
from deepfaune_plugin.hooks.camtrapr.source import (
    SourceState, TableKey, file_formats, inside_listed_tree, looks_like_record_table, read_record_table, read_tree,
)

DEFAULT_OUTPUT = "deepfaune_recordTable.csv"


class CamtrapROptionError(HostError):
    pass


@dataclass(frozen=True)
class CamtrapROptions:
    min_delta_time: int = 0
    compared_to: str = LAST_INDEPENDENT
    include: frozenset[str] = frozenset()
    cameras_independent: bool = False
    scientific_names: bool = False
    species_folders: Path | None = None
    camera_table: bool = False

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> "CamtrapROptions":
        return cls(
            min_delta_time=_minutes(options.get("min_delta_time")),
            compared_to=_compared_to(options.get("delta_time_compared_to")),
            include=_include(options.get("include")),
            cameras_independent=bool(options.get("cameras_independent")),
            scientific_names=bool(options.get("scientific_names")),
            species_folders=Path(options["species_folders"]) if options.get("species_folders") else None,
            camera_table=bool(options.get("camera_table")),
        )


def _minutes(value: Any) -> int:
    if value in (None, ""):
        return 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CamtrapROptionError(f"--min-delta-time: {value!r} is not a number of minutes") from None
    if number < 0 or not number.is_integer():
        raise CamtrapROptionError(f"--min-delta-time: {value!r} must be a whole number of minutes >= 0 "
                                  "(camtrapR's minDeltaTime is an integer)")
    return int(number)


def _compared_to(value: Any) -> str:
    if value in (None, ""):
        return LAST_INDEPENDENT
    for choice in COMPARED_TO:
        if str(value).strip().lower() == choice.lower():
            return choice
    raise CamtrapROptionError(f"--delta-time-compared-to: {value!r}; choose {' or '.join(COMPARED_TO)}")


def _include(value: Any) -> frozenset[str]:
    if not value:
        return frozenset()
    values = [value] if isinstance(value, str) else list(value)
    kinds = {part.strip().lower() for v in values for part in str(v).split(",") if part.strip()}
    unknown = sorted(kinds - set(NON_ANIMAL_KEYS))
    if unknown:
        raise CamtrapROptionError(f"--include: unknown {', '.join(map(repr, unknown))}; "
                                  f"choose among {', '.join(NON_ANIMAL_KEYS)}")
    return frozenset(kinds)


def scientific_namer() -> Callable[[str], str]:
    """key → scientific name (`taxonomy.taxon_for_key`); keys without a taxon (empty, vehicle, undefined)
    stay as their English key."""
    def name(key: str) -> str:
        found = taxon_for_key(key)
        return key if found is None else found.scientific_name

    return name


def _warn(message: str) -> None:
    say(f"warning: {message}")


class CamtrapRHost(Host):
    name = "camtrapr"
    description = ("camtrapR: a station tree (inDir/Station/[Camera/]files) or a record-table CSV; "
                   "writes camtrapR's record table (independence filter, delta times, n_images)")
    priority = 10
    labels_held = "a station tree sorted into species folders needs --species-from-folders"
    options: tuple[HostOption, ...] = (
        HostOption("min-delta-time", "minutes between independent records of a species at a station "
                   "(camtrapR's minDeltaTime; default 0: every record)", default=0, from_record=True),
        HostOption("delta-time-compared-to", "lastIndependentRecord (default) or lastRecord "
                   "(camtrapR's deltaTimeComparedTo)", default=LAST_INDEPENDENT, from_record=True),
        HostOption("include", "also write these non-animal records: undefined, empty, human, vehicle "
                   "(repeat, or comma-separated)", multiple=True, from_record=True),
        HostOption("cameras-independent", "records at different cameras of a station are independent "
                   "(camtrapR's camerasIndependent)", flag=True, from_record=True),
        HostOption("scientific-names", "Species as scientific names instead of labels in --lang", flag=True,
                   from_record=True),
        HostOption("species-folders", "also build OUTDIR/Station/[Camera/]Species/files (hard links, else "
                   "copies) for recordTable(IDfrom = \"directory\")"),
        HostOption("species-from-folders", "station tree: the last folder level is the species a person sorted "
                                           "the files into (Station/[Camera/]Species/files, recordTable(IDfrom = "
                                           "\"directory\")): what deepfaune evaluate and the review page's "
                                           "evaluation compare DeepFaune's labels with", flag=True,
                   commands=("run", "review", "evaluate"), from_record=True),
        HostOption("file-formats", "station tree: the extensions to read, as recordTable(video = list(file_formats "
                   "= ...)) (default jpg, camtrapR's default; e.g. jpg,mp4)", from_record=True),
        HostOption("camera-table", "also write a camera-trap table (Station, [Camera,] Setup_date, "
                   "Retrieval_date from the first and last image)", flag=True),
    )

    def detect(self, source: Path) -> bool:
        """Only a record table is recognised; a station tree looks like any folder, so it needs --host camtrapr."""
        return looks_like_record_table(Path(source))

    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        opts = CamtrapROptions.parse(options)  # bad options fail before any model runs
        source = Path(source)
        formats = file_formats(options.get("file_formats"))
        manifest = (read_tree(source, formats, species_from_folders=bool(options.get("species_from_folders")))
                    if source.is_dir() else read_record_table(source))
        if opts.species_folders is not None:
            check_species_root(opts.species_folders)
            if manifest.host_state.kind == "tree" and inside_listed_tree(source, opts.species_folders):
                raise CamtrapROptionError(
                    f"--species-folders {opts.species_folders}: inside the source tree, where the next run would "
                    "read it as stations; choose a folder outside it (or name it deepfaune_...)")
        return manifest

    def default_output(self, manifest: Manifest) -> Path:
        state: SourceState = manifest.host_state
        return (state.source if state.kind == "tree" else state.source.parent) / DEFAULT_OUTPUT

    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        opts = CamtrapROptions.parse(options)
        state: SourceState = manifest.host_state
        target = Path(options["output"]) if options.get("output") else self.default_output(manifest)
        if target.suffix.lower() != ".csv":
            raise CamtrapROptionError(f"--output {target}: the camtrapR record table is a .csv file")
        if state.kind == "table" and os.path.abspath(target) == os.path.abspath(state.source):
            raise CamtrapROptionError(f"--output {target}: would overwrite the source record table; "
                                      "choose another file")

        species_of = scientific_namer() if opts.scientific_names else None
        items = {item.relpath: item for item in manifest.items}
        images, undated = [], []
        for d, key, boxes, counted in _records(results, opts.include):
            name = species_of(key) if species_of else (
                label_text(results.classes, key, results.settings.lang) if boxes or key != d.prediction_key
                else d.prediction)
            image = self._image(items[d.relpath], d, name, state.source, boxes, counted)
            if counted is not None and key != d.prediction_key:
                image = replace(image, other_species=True)
            (images if d.date is not None else undated).append(image)
        if undated:
            names = ", ".join(i.item.relpath for i in undated[:5]) + (", ..." if len(undated) > 5 else "")
            _warn(f"{len(undated)} file(s) without a date are left out of the record table "
                  f"(camtrapR omits them too): {names}")
        file_dated = [i.item.relpath for i in images if _file_dated(results.raw.get(i.item.relpath))]
        if file_dated:
            names = ", ".join(file_dated[:5]) + (", ..." if len(file_dated) > 5 else "")
            _warn(f"{len(file_dated)} video(s) carry no creation date ({_undated_containers(file_dated)}): their "
                  f"DateTimeOriginal is the file's modification time, which copying may have changed: {names}")

        independent = assess([to_record(i) for i in images], opts.min_delta_time, opts.compared_to,
                             opts.cameras_independent and state.has_camera)
        written = [write_csv(target, *record_rows(independent, state.has_camera, results.standin, results.head))]
        _say_fields([i.decision for i in images], {id(ind.record.payload.decision) for ind in independent})

        if opts.camera_table:
            dated = [(items[d.relpath], d.date) for d in results.decisions if not d.failure and d.date is not None]
            cam_path = target.with_name(_camera_table_name(target))
            written.append(write_csv(cam_path, *camera_table(dated, state.has_camera)))
            for station, first, last in _same_instant(dated):
                _warn(f"camera table: {station} has images at one instant only ({first}); cameraOperation() "
                      "refuses setup == retrieval, edit that row")
        if opts.species_folders is not None:
            warn_notes(build_species_tree(opts.species_folders, images + undated, standin=results.standin),
                       opts.species_folders)
            written.append(Path(opts.species_folders))
        return written

    @staticmethod
    def _image(item, decision: Decision, species: str, source: Path, boxes: tuple[AnimalDecision, ...] = (),
               counted: int | None = None) -> Image:
        if isinstance(item.host_key, TableKey):
            return Image(item, decision, species, item.host_key.directory, item.host_key.filename, boxes, counted)
        return Image(item, decision, species, tree_directory(source, item.relpath), item.path.name, boxes, counted)


def _records(results: RunResults, include
             ) -> Iterator[tuple[Decision, str, tuple[AnimalDecision, ...], int | None]]:
    """(decision, species key, its animal boxes, a person's count of it) of each record: DeepFaune's one per
    selected file (its own answer, no boxes); with --every-animal, a file with animal boxes has one per species
    they show instead (`species_records`), and its own answer beside them only when that is a person or a
    vehicle. A file a person counted per species (HumanFields.species_counts) has one per species they counted
    (and its label's, when that is not among them): theirs replace the boxes'."""
    boxes = animals_by_file(results.animals)
    selected = {id(d) for d in select(results.decisions, include)}
    for d in results.decisions:
        counted = d.human.fields.species() if d.human is not None and id(d) in selected else {}
        if counted:
            if d.prediction_key not in counted:
                yield d, d.prediction_key, (), None
            for key, n in counted.items():
                yield d, key, (), n
            continue
        own = boxes.get(d.relpath)
        if id(d) in selected and (not own or d.prediction_key in BESIDE_BOXES):
            yield d, d.prediction_key, (), None
        for key, group in species_records(own or (), include).items():
            yield d, key, group, None


def _say_fields(decisions: list[Decision], recorded: set[int]) -> None:
    """Which people's fields the record table holds, and those of files that are no record of their own (the
    table keeps one record per independent event): said, never dropped without a word."""
    held = {name: f"{name} column" for name in HUMAN_FIELDS}
    held["species_counts"] = "one record per species"
    for line in fields_note("camtrapR", fields_given(decisions), held):
        say(line)
    lost = [d.relpath for d in decisions if id(d) not in recorded and d.human is not None and d.human.fields.given()]
    if lost:
        say(f"camtrapR: {len(lost)} file(s) with people's fields are not records of their own (one record per "
            f"independent event): their values are not in the record table, e.g. {lost[0]}")


def tree_directory(source: Path, relpath: str) -> str:
    """Directory as recordTable() writes it: exiftool's path of the folder, which starts with inDir as the user
    gave it (list.dirs(inDir) then exiftool on each station): "./StationA" for ".", never made absolute."""
    return f"{source.as_posix().rstrip('/')}/{PurePosixPath(relpath).parent.as_posix()}"


def _undated_containers(relpaths: list[str]) -> str:
    """Why those videos have no date, per container: "1 AVI: the format has none; 2 MP4: not set by the camera"."""
    kinds = Counter(PurePosixPath(rel).suffix.lstrip(".").upper() or "no extension" for rel in relpaths)
    return "; ".join(f"{n} {kind}: " + ("the format has none" if kind == "AVI" else "not set by the camera")
                     for kind, n in sorted(kinds.items()))


def _file_dated(raw) -> bool:
    return raw is not None and raw.date_source == FILE_DATE


def _camera_table_name(target: Path) -> str:
    stem = target.stem
    stem = stem.replace("recordTable", "cameraTable") if "recordTable" in stem else f"{stem}_cameraTable"
    return stem + target.suffix


def _same_instant(dated) -> list[tuple[str, Any, Any]]:
    spans: dict[tuple, list] = {}
    for item, when in dated:
        span = spans.setdefault((item.station, item.camera), [when, when])
        span[0], span[1] = min(span[0], when), max(span[1], when)
    return [(f"{s}" + (f"/{c}" if c else ""), a, b) for (s, c), (a, b) in sorted(spans.items(), key=str) if a == b]


@hookimpl
def register_hosts(register):
    register(CamtrapRHost())
