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
from .sequences import chunks, sequence_blocks
from .types import ClassTable, Decision, Manifest, MediaItem, Problem, RawResult


STORE_BATCH = 8  # files per store transaction


class RunError(DeepfauneError):
    """A run cannot start or finish (bad source, models missing...): a message for the user, not a traceback."""


#: Files (whole sequences) decided and handed to the host at a time: a run's memory grows with this, not
#: with the season, when the host lists its media lazily and writes as results come (the folder host does).
CHUNK_FILES = 1000
#: The same on a Dask cluster, whose workers each take shards of a chunk: large enough that a chunk's tail
#: (workers idle while its last shards finish) costs nothing, small enough to keep memory bounded.
CLUSTER_CHUNK_FILES = 10_000


@dataclass
class Tally:
    """What the console, the run record and the summary need, counted as blocks of results go by."""

    files: int = 0
    sequences: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    sequences_per_label: Counter = field(default_factory=Counter)  # what an ecologist counts
    files_per_label: Counter = field(default_factory=Counter)

    def add(self, decisions: Sequence[Decision]) -> None:
        """Whole sequences only: a sequence never spans two calls."""
        seen: set[int] = set()
        for d in decisions:
            self.files += 1
            if d.failure:
                self.failures.append((d.relpath, d.failure))
                continue
            self.files_per_label[d.prediction] += 1
            if d.seqnum not in seen:
                seen.add(d.seqnum)
                self.sequences += 1
                self.sequences_per_label[d.prediction] += 1


@dataclass
class RunSummary:
    """A finished run.  `results.decisions`/`results.raw` hold every file's only when the run kept them
    (`run(keep_results=True)`, the default for library use); `tally` always has the counts."""

    results: RunResults
    manifest: Manifest
    written: list[Path]
    elapsed: float
    problems: list[Problem] = field(default_factory=list)
    review_files: list[Path] = field(default_factory=list)  # the review page and the run record
    tally: Tally | None = None

    def __post_init__(self) -> None:
        if self.tally is None:
            self.tally = Tally()
            self.tally.add(self.results.decisions)

    @property
    def failures(self) -> list[tuple[str, str]]:
        return list(self.tally.failures)

    def label_counts(self) -> Counter:
        """Sequences per label, failures excluded."""
        return Counter(self.tally.sequences_per_label)


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


def _open_store(path: Path | None) -> ResultStore | None:
    if path is None:
        return None
    try:
        return ResultStore(path)
    except (OSError, sqlite3.Error, RuntimeError) as err:
        raise RunError(f"result store {path}: {err}") from err


class Inference:
    """Raw outputs for a run, chunk after chunk: the result store first, the backend for the rest.  The
    backend's models are loaded once, when the first file needs them, and kept until `close`."""

    def __init__(self, backend, settings: RunSettings, store: ResultStore | None, total: int | None,
                 progress: bool, log):
        self.backend, self.settings, self.store, self.log = backend, settings, store, log
        describe = getattr(backend, "describe", None)
        self.description = describe(settings) if describe and store is not None else None
        self.classes: ClassTable | None = self.description.classes if self.description else None
        self.info: dict[str, Any] = dict(self.description.info) if self.description else {}
        self.fingerprint = self.description.fingerprint if self.description else ""
        if self.description is not None:
            check_settings(settings, self.description.classes)
        self.computed = self.reused = 0
        self.bar = Progress(total) if progress and total else None
        self.predictor = None
        self.cluster = None  # (client, local cluster or None), opened on first need, kept for the run
        self._begun = False

    @property
    def stores(self) -> bool:
        return self.description is not None

    def raws(self, items: Sequence[MediaItem]) -> dict[str, RawResult]:
        """Raw outputs of `items` by relpath; those computed are stored batch by batch as they come."""
        raws: dict[str, RawResult] = {}
        if self.stores:
            for fingerprint, group in by_fingerprint(self.fingerprint, items).items():
                raws.update(self.store.lookup(fingerprint, group))
        self.reused += len(raws)
        if self.bar and raws:
            self.bar.discount(len(raws))
        todo = [item for item in items if item.relpath not in raws]
        if not todo:
            return raws
        sink = _Sink(self, raws)
        compute = self._compute_on_cluster if self.settings.scheduler else self._compute_here
        try:
            stopped = compute(todo, sink)
        finally:
            sink.flush()
        if stopped:
            raise RunInterrupted(f"interrupted: {self.computed + self.reused} files are computed and stored"
                                 + (f" in {self.store.path}" if self.stores else "")
                                 + "; run the same command again to resume")
        return raws

    def close(self) -> None:
        if self.bar:
            self.bar.close()
        if self.predictor is not None:
            predictor, self.predictor = self.predictor, None
            predictor.close()
        if self.cluster is not None:
            from .distributed import disconnect

            connection, self.cluster = self.cluster, None
            disconnect(*connection)

    def _begin(self, classes: ClassTable, info) -> None:
        self.classes, self.info = classes, dict(info)
        if not self._begun:
            self._begun = True
            if self.description is None:  # else checked already, before any model was loaded
                check_settings(self.settings, classes)
            if self.info.get("standin"):
                self.log(_STANDIN_BANNER)

    def _compute_here(self, todo, sink: "_Sink") -> bool:
        """In this process, in the order given. True when Ctrl-C stopped it."""
        if self.predictor is None:
            self.predictor = self.backend.open(self.settings)
        self._begin(self.predictor.classes, self.predictor.info)
        with _graceful_interrupt() as stop:
            for item, raw in zip(todo, self.predictor.predict(iter(todo))):
                sink.add(item, raw)
                if stop.requested:
                    break
        return stop.requested

    def _compute_on_cluster(self, todo, sink: "_Sink") -> bool:
        """On a Dask cluster (imported only here): shards on workers, results in completion order."""
        from .distributed import ClusterError, compute_on_cluster, connect

        description = self.description
        if description is not None:
            self._begin(description.classes, description.info)
        try:
            if self.cluster is None:
                self.cluster = connect(self.settings.scheduler)
            with _graceful_interrupt() as stop:
                outcome = compute_on_cluster(todo, self.settings, self.settings.backend, self.settings.scheduler,
                                             sink.add, should_stop=lambda: stop.requested,
                                             expected_info=description.info if description is not None else None,
                                             log=self.log, client=self.cluster[0])
        except ClusterError as err:
            raise RunError(str(err)) from err
        if outcome.classes is not None:
            if description is None:
                self._begin(outcome.classes, outcome.info)
            else:
                self.info = dict(outcome.info)  # what the workers loaded, checked against the description
        return outcome.stopped


class _Sink:
    """Where computed results go, in whatever order they come: dates completed, kept by relpath, stored
    batch by batch."""

    def __init__(self, inference: Inference, raws: dict[str, RawResult]):
        self.inference, self.raws = inference, raws
        self.batch: list[tuple[MediaItem, RawResult]] = []
        self.last_flush = time.monotonic()

    def add(self, item: MediaItem, raw: RawResult) -> None:
        if raw.failure is None and raw.date_source != "exif":
            raw.date, raw.date_source = media_date(item)
        self.raws[item.relpath] = raw
        self.inference.computed += 1
        if self.inference.bar:
            self.inference.bar.update(failed=raw.failure is not None)
        if self.inference.stores:
            self.batch.append((item, raw))
            if len(self.batch) >= STORE_BATCH or time.monotonic() - self.last_flush > 5.0:
                self.flush()

    def flush(self) -> None:
        if self.inference.stores and self.batch:
            entries = by_fingerprint(self.inference.fingerprint, self.batch, lambda entry: entry[0])
            store = self.inference.store
            try:
                for fingerprint, batch in entries.items():
                    store.save(fingerprint, batch)
            except (OSError, sqlite3.Error) as err:  # e.g. the disk holding the store is full
                raise RunError(f"result store {store.path}: cannot save results ({err}); what was stored before is "
                               "kept and the previous outputs are unchanged: free some space (or choose --store "
                               "elsewhere) and run the same command again") from err
        self.batch, self.last_flush = [], time.monotonic()


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
    keep_results: bool = True,
) -> RunSummary:
    """One run. `store`: True = the default result store of this source, a path, or False/None = none.

    Besides the host's outputs, every run writes its record (deepfaune-run.json) and, unless
    `report` is off, the review page (deepfaune-report.html) next to the first output.

    Files go through in chunks of whole sequences (`CHUNK_FILES`): inferred, decided, handed to the host
    and to the review page, then forgotten, unless `keep_results` (the summary then holds every file's
    raw output and decision).  A host that writes at the end (no `open_writer`) always gets them all.
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
    if manifest.detector_mode and manifest.detector_mode != settings.detector_mode:
        log(f"detector mode {manifest.detector_mode} (the {adapter.name} source asks for it) "
            f"instead of {settings.detector_mode}")
        try:
            settings = replace(settings, detector_mode=manifest.detector_mode)
        except ValueError as err:
            raise RunError(f"{source}: {err}") from err

    streamed = manifest.stream is not None
    blocks = manifest.stream if streamed else iter(sequence_blocks(manifest.items))
    total = manifest.count if streamed else len(manifest.items)
    open_writer = getattr(adapter, "open_writer", None)
    keep = keep_results or open_writer is None
    kept_items: list[MediaItem] = []
    kept_raws: dict[str, RawResult] = {}
    kept_decisions: list[Decision] = []
    tally = Tally()
    problems = _ProblemLog(manifest.problems, log)
    problems.flush()

    result_store = _open_store(default_store_path(source) if store is True else (store or None))
    writer = review = None
    try:
        inference = Inference(backend, settings, result_store, total, progress, log)
        try:
            if open_writer is not None:
                try:
                    writer = _writing(lambda: open_writer(manifest, host_options), result_store)
                except ValueError as err:  # an output the host cannot write: said before any model runs
                    raise RunError(str(err)) from err
            if report and writer is not None:
                review = _open_review(Path(writer.target).parent, settings, blur_humans, log)
            offset = 0
            size = CLUSTER_CHUNK_FILES if settings.scheduler else CHUNK_FILES
            for chunk in chunks(blocks, size):
                ordered = with_host_dates(chunk, inference.raws(chunk))
                decisions = decide_run(chunk, ordered, inference.classes, settings)
                for decision in decisions:  # numbers go on from the previous chunk's, as in one table
                    decision.seqnum += offset
                offset = max((d.seqnum for d in decisions), default=offset)
                batch = RunResults(settings=settings, classes=inference.classes,
                                   raw={raw.relpath: raw for raw in ordered}, decisions=decisions,
                                   backend_info=dict(inference.info), output=Path(output) if output else None,
                                   started=started)
                tally.add(decisions)
                if writer is not None:
                    _writing(lambda: writer.add(batch), result_store)
                if review is not None:
                    review = _review_add(review, chunk, batch, log)
                if keep:
                    kept_items.extend(chunk)
                    kept_raws.update(batch.raw)
                    kept_decisions.extend(decisions)
                problems.flush()
        finally:
            inference.close()
        if inference.reused:
            log(f"{inference.reused} of {tally.files} files already computed"
                + (f" (result store {result_store.path})" if result_store is not None else ""))
        if streamed and keep:
            manifest.items = kept_items
        info = dict(inference.info, computed=inference.computed, reused=inference.reused)
        results = RunResults(
            settings=settings, classes=inference.classes, raw=kept_raws, decisions=kept_decisions,
            backend_info=info, output=Path(output) if output else None, started=started, finished=datetime.now(),
        )
        if writer is not None:
            written = _writing(lambda: writer.close(results), result_store)
        else:
            written = _writing(lambda: adapter.write(manifest, results, host_options), result_store)
    except BaseException:
        if writer is not None:
            writer.abort()
        if review is not None:
            review.close()
        raise
    finally:
        if result_store is not None:
            result_store.close()
    summary = RunSummary(results=results, manifest=manifest, written=list(written), elapsed=time.monotonic() - t0,
                         problems=list(manifest.problems), tally=tally)
    if report and review is None and writer is None:  # a host that wrote at the end: its results were kept
        review = _open_review(_report_dir(summary), settings, blur_humans, log)
        if review is not None:
            review = _review_add(review, manifest.items, results, log)
    _write_review(summary, review, command, log)
    return summary


def _writing(step, result_store: ResultStore | None):
    """A host's writing step; a full disk or a read-only card becomes a message that says what is safe."""
    try:
        return step()
    except OSError as err:  # writers are atomic, so the old outputs stay
        raise RunError(f"cannot write the results: {err}; the previous outputs are unchanged"
                       + ("; what was computed is kept in the result store: free some space and run the same "
                          "command again" if result_store is not None else "")) from err


class _ProblemLog:
    """Warnings about a source's entries, said as the (possibly lazy) listing finds them."""

    def __init__(self, problems: list[Problem], log):
        self.problems, self.log, self.said = problems, log, 0

    def flush(self) -> None:
        for problem in self.problems[self.said:]:
            self.log(f"warning: {problem.relpath}: {problem.reason}")
        self.said = len(self.problems)


def _report_dir(summary: RunSummary) -> Path:
    from .report import report_dir

    return report_dir(summary)


def _open_review(out_dir: Path, settings: RunSettings, blur_humans: bool, log):
    from .report.page import ReportBuilder

    try:
        return ReportBuilder(out_dir, settings.threshold, blur_humans=blur_humans)
    except OSError as err:
        log(f"warning: no review page: {err}")
        return None


def _review_add(review, items, results: RunResults, log):
    """The page is a convenience: failing to make it never costs a result (it is dropped, with a warning)."""
    try:
        review.add(items, results)
        return review
    except (OSError, ValueError) as err:
        log(f"warning: no review page: {err}")
        review.close()
        return None


def _write_review(summary: RunSummary, review, command, log) -> None:
    """The page and the record come after the results: failing to write them loses no result."""
    from .report import report_dir, write_run_record

    out_dir = report_dir(summary)
    try:
        if review is not None:
            summary.review_files.append(review.write(summary))
        summary.review_files.append(write_run_record(summary, out_dir, command=command))
    except (OSError, ValueError) as err:  # ValueError: a UnicodeError, say
        log(f"warning: could not write the report or run record in {out_dir}: {err}")
    finally:
        if review is not None:
            review.close()


_STANDIN_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!! STAND-IN MODELS: random weights with DeepFaune's input/output contract.\n"
    "!! Every label and score of this run is MEANINGLESS. Install the real models:\n"
    "!!     deepfaune models install 1.4\n" + "!" * 78 + "\n"
)
