"""One run, in one direction: manifest → media → raw outputs → decisions → host writer."""
from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from .api import Host, RunResults, RunSettings
from .decisions import decide_run
from .errors import DeepfauneError
from .engine.video import FILE_DATE, video_date
from .exifdate import read_exif_date
from .plugins import PluginError, Registry, default_registry
from .progress import Progress
from .store import ResultStore, default_store_path
from .types import ClassTable, Manifest, MediaItem, Problem, RawResult


STORE_BATCH = 8  # files per store transaction


class RunError(DeepfauneError):
    """A run cannot start or finish (bad source, models missing...): a message for the user, not a traceback."""


@dataclass
class RunSummary:
    results: RunResults
    manifest: Manifest
    written: list[Path]
    elapsed: float
    problems: list[Problem] = field(default_factory=list)
    review_files: list[Path] = field(default_factory=list)  # the review page and the run record

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(d.relpath, d.failure) for d in self.results.decisions if d.failure]

    def label_counts(self) -> Counter:
        """Sequences per label (what an ecologist counts), failures excluded."""
        firsts = {}
        for d in self.results.decisions:
            if not d.failure:
                firsts.setdefault(d.seqnum, d.prediction)
        return Counter(firsts.values())


def resolve_host(registry: Registry, name: str, source: Path) -> Host:
    if name != "auto":
        return registry.host(name)
    candidates = [r.obj for r in registry.hosts.values() if _safe_detect(r.obj, source)]
    if not candidates:
        raise RunError(f"{source}: no registered host recognises this source; "
                       f"choose one with --host ({', '.join(sorted(registry.hosts))})")
    best = max(getattr(h, "priority", 10) for h in candidates)
    top = [h for h in candidates if getattr(h, "priority", 10) == best]
    if len(top) > 1:
        raise RunError(f"{source}: several hosts recognise this source ({', '.join(h.name for h in top)}); "
                       "choose one with --host")
    return top[0]


def _safe_detect(host: Host, source: Path) -> bool:
    try:
        return bool(host.detect(source))
    except Exception:  # a plugin's detect() must never break auto-detection
        return False


def check_settings(settings: RunSettings, classes: ClassTable) -> None:
    if settings.lang not in classes.languages:
        raise RunError(f"language {settings.lang!r} is not available for model {classes.version}; "
                       f"choose one of {', '.join(classes.languages)}")
    known = {label.lower() for labels in classes.names.values() for label in labels}
    unknown = [name for name in settings.exclude if name.lower() not in known]
    if unknown:
        raise RunError(f"--exclude: unknown species {', '.join(map(repr, unknown))} for model {classes.version}; "
                       f"known: {', '.join(classes.labels(settings.lang))}")


class RunInterrupted(RunError):
    """Ctrl-C: what was computed is stored; the same command resumes."""


@dataclass
class Inference:
    """Where raw outputs come from: the store first, the backend for the rest."""

    raws: dict[str, RawResult]
    classes: ClassTable
    info: dict[str, Any]
    computed: int = 0
    reused: int = 0


def _open_store(path: Path | None) -> ResultStore | None:
    if path is None:
        return None
    try:
        return ResultStore(path)
    except (OSError, sqlite3.Error, RuntimeError) as err:
        raise RunError(f"result store {path}: {err}") from err


def infer(items: Sequence[MediaItem], backend, settings: RunSettings, store: ResultStore | None,
          progress: bool, log) -> Inference:
    """Raw outputs for every item, in manifest order of relpath; stored as they come, batch by batch."""
    describe = getattr(backend, "describe", None)
    description = describe(settings) if describe and store is not None else None
    raws: dict[str, RawResult] = {}
    if description is not None:
        for fingerprint, group in by_fingerprint(description.fingerprint, items).items():
            raws.update(store.lookup(fingerprint, group))
    todo = [item for item in items if item.relpath not in raws]
    result = Inference(raws=raws, classes=description.classes if description else None,
                       info=dict(description.info) if description else {}, reused=len(raws))
    if description is not None:
        check_settings(settings, description.classes)
    if result.reused:
        log(f"{result.reused} of {len(items)} files already computed (result store {store.path})")
    if not todo:
        return result
    sink = _Sink(result, store if description is not None else None,
                 description.fingerprint if description is not None else "", len(todo), progress)
    compute = _compute_on_cluster if settings.scheduler else _compute_here
    try:
        stopped = compute(todo, backend, settings, description, sink, log)
    finally:
        sink.close()
    if stopped:
        raise RunInterrupted(f"interrupted: {len(result.raws)} of {len(items)} files are computed and stored"
                             + (f" in {store.path}" if description is not None else "")
                             + "; run the same command again to resume")
    return result


class _Sink:
    """Where computed results go, in whatever order they come: dates completed, kept by relpath, stored
    batch by batch."""

    def __init__(self, result: Inference, store: ResultStore | None, fingerprint: str, total: int, progress: bool):
        self.result, self.store, self.fingerprint = result, store, fingerprint
        self.total, self.progress = total, progress
        self.bar: Progress | None = None
        self.batch: list[tuple[MediaItem, RawResult]] = []
        self.last_flush = time.monotonic()

    def start(self) -> None:
        if self.progress and self.bar is None:
            self.bar = Progress(self.total)

    def add(self, item: MediaItem, raw: RawResult) -> None:
        self.start()
        if raw.failure is None and raw.date_source != "exif":
            raw.date, raw.date_source = media_date(item)
        self.result.raws[item.relpath] = raw
        self.result.computed += 1
        if self.bar:
            self.bar.update(failed=raw.failure is not None)
        if self.store is not None:
            self.batch.append((item, raw))
            if len(self.batch) >= STORE_BATCH or time.monotonic() - self.last_flush > 5.0:
                self.flush()

    def flush(self) -> None:
        if self.store is not None and self.batch:
            for fingerprint, batch in by_fingerprint(self.fingerprint, self.batch, lambda entry: entry[0]).items():
                self.store.save(fingerprint, batch)
        self.batch, self.last_flush = [], time.monotonic()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.bar:
                self.bar.close()


def item_fingerprint(fingerprint: str, item: MediaItem) -> str:
    """The store key of an item's outputs: those computed on a host's known boxes hold only for those boxes."""
    if item.known_boxes is None:
        return fingerprint
    key = json.dumps([fingerprint, [astuple(box) for box in item.known_boxes]])
    return hashlib.sha256(key.encode()).hexdigest()


def by_fingerprint(fingerprint: str, entries, item=lambda entry: entry) -> dict[str, list]:
    groups: dict[str, list] = {}
    for entry in entries:
        groups.setdefault(item_fingerprint(fingerprint, item(entry)), []).append(entry)
    return groups


def _begin(result: Inference, settings: RunSettings, classes: ClassTable, info, log) -> None:
    result.classes, result.info = classes, dict(info)
    check_settings(settings, classes)
    if result.info.get("standin"):
        log(_STANDIN_BANNER)


def _compute_here(todo, backend, settings: RunSettings, description, sink: _Sink, log) -> bool:
    """In this process: the models loaded once, files in manifest order. True when Ctrl-C stopped it."""
    predictor = backend.open(settings)
    try:
        _begin(sink.result, settings, predictor.classes, predictor.info, log)
        sink.start()
        with _graceful_interrupt() as stop:
            for item, raw in zip(todo, predictor.predict(iter(todo))):
                sink.add(item, raw)
                if stop.requested:
                    break
        return stop.requested
    finally:
        predictor.close()


def _compute_on_cluster(todo, backend, settings: RunSettings, description, sink: _Sink, log) -> bool:
    """On a Dask cluster (imported only here): shards on workers, results in completion order."""
    from .distributed import ClusterError, compute_on_cluster

    if description is not None:
        _begin(sink.result, settings, description.classes, description.info, log)
    sink.start()
    try:
        with _graceful_interrupt() as stop:
            outcome = compute_on_cluster(todo, settings, settings.backend, settings.scheduler, sink.add,
                                         should_stop=lambda: stop.requested,
                                         expected_info=description.info if description is not None else None,
                                         log=log)
    except ClusterError as err:
        raise RunError(str(err)) from err
    if outcome.classes is not None:
        if description is None:
            _begin(sink.result, settings, outcome.classes, outcome.info, log)
        else:
            sink.result.info = dict(outcome.info)  # what the workers loaded, checked against the description
    return outcome.stopped


class _Stop:
    requested = False


@contextmanager
def _graceful_interrupt():
    """First Ctrl-C: finish the current file, store the batch, stop. Second Ctrl-C: stop now."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        print("\nstopping after the current file (Ctrl-C again to stop at once)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def media_date(item: MediaItem) -> tuple[datetime | None, str]:
    """(date, source) a file carries: EXIF for an image; a video's container date, else its file date
    unless the host knows a date (left to `with_host_dates`, a better guess than a file's mtime)."""
    if not item.is_video:
        date = read_exif_date_safely(item.path)
        return date, "exif" if date else ""
    date, source = video_date(item.path)
    if source == FILE_DATE and item.timestamp is not None:
        return None, ""
    return date, source


def read_exif_date_safely(path: Path) -> datetime | None:
    try:
        return read_exif_date(path)
    except OSError:
        return None


def with_host_dates(items: Sequence[MediaItem], raws: dict[str, RawResult]) -> list[RawResult]:
    """Raw results in manifest order; a file without an EXIF date takes the date its host knows."""
    ordered = []
    for item in items:
        raw = raws[item.relpath]
        if raw.failure is None and raw.date is None and item.timestamp is not None:
            raw.date, raw.date_source = item.timestamp, "host"
        ordered.append(raw)
    return ordered


def run(
    source: Path,
    settings: RunSettings,
    host: str = "auto",
    host_options: Mapping[str, Any] | None = None,
    output: Path | None = None,
    registry: Registry | None = None,
    progress: bool = True,
    log=None,
    store: Path | None | bool = True,
    report: bool = True,
    blur_humans: bool = False,
    command: Sequence[str] | None = None,
) -> RunSummary:
    """One run. `store`: True = the default result store of this source, a path, or False/None = none.

    Besides the host's outputs, every run writes its record (deepfaune-run.json) and, unless
    `report` is off, the review page (deepfaune-report.html) next to the first output.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    registry = registry or default_registry()
    host_options = dict(host_options or {})
    host_options["output"] = Path(output) if output else None  # so that read() can refuse a bad target early
    source = Path(source)
    if not source.exists():
        raise RunError(f"{source}: no such file or folder")
    started = datetime.now()
    t0 = time.monotonic()
    try:
        adapter = resolve_host(registry, host, source)
        backend = registry.backend(settings.backend)
    except PluginError as err:
        raise RunError(str(err)) from err

    try:
        manifest = adapter.read(source, host_options)
    except DeepfauneError:
        raise
    except (OSError, ValueError) as err:
        raise RunError(f"{source}: cannot read as a {adapter.name} source: {err}") from err
    for problem in manifest.problems:
        log(f"warning: {problem.relpath}: {problem.reason}")
    if manifest.detector_mode and manifest.detector_mode != settings.detector_mode:
        log(f"detector mode {manifest.detector_mode} (the {adapter.name} source asks for it) "
            f"instead of {settings.detector_mode}")
        try:
            settings = replace(settings, detector_mode=manifest.detector_mode)
        except ValueError as err:
            raise RunError(f"{source}: {err}") from err
    items = manifest.items
    result_store = _open_store(default_store_path(source) if store is True else (store or None))
    try:
        inference = infer(items, backend, settings, result_store, progress, log)
    finally:
        if result_store is not None:
            result_store.close()
    raws = with_host_dates(items, inference.raws)
    decisions = decide_run(items, raws, inference.classes, settings)
    info = dict(inference.info, computed=inference.computed, reused=inference.reused)
    results = RunResults(
        settings=settings, classes=inference.classes, raw={r.relpath: r for r in raws}, decisions=decisions,
        backend_info=info, output=Path(output) if output else None, started=started, finished=datetime.now(),
    )
    try:
        written = adapter.write(manifest, results, host_options)
    except OSError as err:  # a full disk, a read-only card: writers are atomic, so the old outputs stay
        raise RunError(f"cannot write the results: {err}; the previous outputs are unchanged"
                       + ("; what was computed is kept in the result store: free some space and run the same "
                          "command again" if result_store is not None else "")) from err
    summary = RunSummary(results=results, manifest=manifest, written=list(written), elapsed=time.monotonic() - t0,
                         problems=list(manifest.problems))
    _write_review(summary, report, blur_humans, command, log)
    return summary


def _write_review(summary: RunSummary, report: bool, blur_humans: bool, command, log) -> None:
    """The page and the record come after the results: failing to write them loses no result."""
    from .report import report_dir, write_report, write_run_record

    out_dir = report_dir(summary)
    try:
        if report:
            summary.review_files.append(write_report(summary, out_dir, blur_humans=blur_humans))
        summary.review_files.append(write_run_record(summary, out_dir, command=command))
    except (OSError, ValueError) as err:  # ValueError: a UnicodeError, say
        log(f"warning: could not write the report or run record in {out_dir}: {err}")


_STANDIN_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!! STAND-IN MODELS: random weights with DeepFaune's input/output contract.\n"
    "!! Every label and score of this run is MEANINGLESS. Install the real models:\n"
    "!!     deepfaune models install 1.4\n" + "!" * 78 + "\n"
)
