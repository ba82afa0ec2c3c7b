"""One run, in one direction: manifest → media → raw outputs → decisions → host writer.

The media go through in chunks of whole sequences (a folder's images, a video), in DeepFaune's numbering
order: each chunk's raw outputs come from `inference`, are decided, handed to the host and to the review
page, and forgotten, so a season needs no more memory than a chunk when the host lists and writes lazily.
"""
from __future__ import annotations

import errno
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from .api import Host, RunResults, RunSettings
from .decisions import decide_run
from .errors import DeepfauneError, RunError
from .inference import Inference, open_store
from .plugins import PluginError, Registry, default_registry
from .sequences import chunks, sequence_blocks
from .store import ResultStore, default_store_path
from .types import HOST_DATE, Decision, Manifest, MediaItem, Problem, RawResult


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
    #: Files with a result that the user should still look at (a truncated JPEG decoded as far as it goes,
    #: a video only PyAV could read): (relpath, the `warning` column's text).
    warned: list[tuple[str, str]] = field(default_factory=list)
    sequences_per_label: Counter = field(default_factory=Counter)  # what an ecologist counts
    files_per_label: Counter = field(default_factory=Counter)

    def add(self, decisions: Sequence[Decision], raws: Mapping[str, RawResult] | None = None) -> None:
        """Whole sequences only: a sequence never spans two calls.  `raws` (by relpath) gives the warnings."""
        seen: set[int] = set()
        for d in decisions:
            self.files += 1
            if d.failure:
                self.failures.append((d.relpath, d.failure))
                continue
            raw = raws.get(d.relpath) if raws else None
            if raw is not None and raw.warnings:
                self.warned.append((d.relpath, "; ".join(raw.warnings)))
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
            self.tally.add(self.results.decisions, self.results.raw)

    @property
    def failures(self) -> list[tuple[str, str]]:
        return list(self.tally.failures)

    @property
    def skipped(self) -> int:
        """Media files of the source left without a result before any model saw them (missing, refused,
        not fetched): the problems that are not mere notes."""
        return sum(p.skipped for p in self.problems)

    @property
    def complete(self) -> bool:
        """Every file of the source has a result (warnings allowed): what exit status 0 promises."""
        return not self.tally.failures and self.skipped == 0

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


def with_host_dates(items: Sequence[MediaItem], raws: dict[str, RawResult]) -> list[RawResult]:
    """Raw results in manifest order; a file without an EXIF date takes the date its host knows."""
    ordered = []
    for item in items:
        raw = raws[item.relpath]
        if raw.failure is None and raw.date is None and item.timestamp is not None:
            raw.date, raw.date_source = item.timestamp, HOST_DATE
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
    """One run. `store`: True = the user's result store (shared by all sources), a path, or False/None = none.

    Besides the host's outputs, every run writes its record (deepfaune-run.json) and, unless
    `report` is off, the review page (deepfaune-report.html) next to the first output, both named
    after `output` when one is given (report.report_names).

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

    result_store = open_store(default_store_path() if store is True else (store or None))
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
                tally.add(decisions, batch.raw)
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
    """A host's writing step; a full disk or a read-only card becomes a message that says what is safe,
    and what to do: free space only when space is what is missing."""
    try:
        return step()
    except IsADirectoryError as err:
        where = err.filename2 or err.filename  # a rename onto a folder names the folder second
        raise RunError(f"cannot write the results: {where} is a folder; give --output a file name "
                       "(the previous outputs are unchanged)") from err
    except OSError as err:  # writers are atomic, so the old outputs stay
        fix = "free some space" if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "fix that"
        raise RunError(f"cannot write the results: {err}; the previous outputs are unchanged"
                       + (f"; what was computed is kept in the result store: {fix} and run the same "
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
    from .report import report_dir, report_names, write_run_record

    out_dir = report_dir(summary)
    page, record = report_names(summary.results.output)  # named after the output: runs with their own keep theirs
    try:
        if review is not None:
            summary.review_files.append(review.write(summary, page, record))
        summary.review_files.append(write_run_record(summary, out_dir, command=command, name=record))
    except (OSError, ValueError) as err:  # ValueError: a UnicodeError, say
        log(f"warning: could not write the report or run record in {out_dir}: {err}")
    finally:
        if review is not None:
            review.close()


