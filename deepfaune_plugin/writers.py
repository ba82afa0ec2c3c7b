"""Everything a run hands its results to, chunk after chunk: the host's outputs, the counts, the review page,
the run record.  The pipeline's loop knows only `RunWriter`; what differs between outputs lives here.

Two kinds, by what a failure costs: an *output* (the host's files) fails the run, with a message that says the
previous outputs are unchanged; a *review* file (the page, the record) is a convenience, dropped with a warning,
never costing a result.  Writers are closed in the order given, outputs first: the page lists what they wrote.
"""
from __future__ import annotations

import errno
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .api import Host, RunResults, RunSettings
from .errors import HostError, RunError
from .store import ResultStore
from .summary import RunSummary
from .types import Decision, Manifest, MediaItem, RawResult


OUTPUT, REVIEW, NONE = "output", "review", ""


class RunWriter:
    """Takes a run's results as they come (whole sequences, DeepFaune's order), then the finished run."""

    #: Where the files `close` returns are listed: OUTPUT (summary.written), REVIEW (summary.review_files).
    role = NONE
    #: The folder of the main output where it is known before any result (the review page goes there).
    out_dir: Path | None = None

    def add(self, items: Sequence[MediaItem], batch: RunResults) -> None:
        pass

    def close(self, summary: "RunSummary") -> list[Path]:
        return []

    def abort(self) -> None:
        """The run failed: leave every previous file as it was."""


def open_output(adapter: Host, manifest: Manifest, options: Mapping[str, Any],
                store: ResultStore | None) -> RunWriter:
    """The host's outputs: its own writer when it offers one (`open_writer`), else one that collects the run
    and calls `write` at the end (a Timelapse .ddb, a Camtrap DP package are rewritten whole anyway)."""
    try:
        writer = writing(lambda: adapter.open_writer(manifest, options), store)
    except (HostError, ValueError) as err:  # an output the host cannot write: said before any model runs
        raise RunError(str(err)) from err
    if writer is None:
        return WriteAtEnd(adapter, manifest, options, store)
    return HostWriter(writer, store)


class HostWriter(RunWriter):
    """A host writer that writes as results come (the folder's CSV): a season is never held in memory."""

    role = OUTPUT

    def __init__(self, writer, store: ResultStore | None):
        self.writer, self.store = writer, store
        self.out_dir = Path(writer.target).parent

    def add(self, items, batch) -> None:
        writing(lambda: self.writer.add(batch), self.store)

    def close(self, summary) -> list[Path]:
        return list(writing(lambda: self.writer.close(summary.results), self.store))

    def abort(self) -> None:
        self.writer.abort()


class WriteAtEnd(RunWriter):
    """The generic writer around `Host.write`: keeps every result of the run and writes once, at the end."""

    role = OUTPUT

    def __init__(self, adapter: Host, manifest: Manifest, options: Mapping[str, Any], store: ResultStore | None):
        self.adapter, self.manifest, self.options, self.store = adapter, manifest, options, store
        self.kept = KeptResults()

    def add(self, items, batch) -> None:
        self.kept.add(items, batch)

    def close(self, summary) -> list[Path]:
        results = self.kept.results(summary.results)
        return list(writing(lambda: self.adapter.write(self.manifest, results, self.options), self.store))


class KeptResults(RunWriter):
    """Every file's raw output and decision, for callers that want them in the summary (library use)."""

    def __init__(self) -> None:
        self.raw: dict[str, RawResult] = {}
        self.decisions: list[Decision] = []
        self.animals: list | None = None  # --every-animal's per-box decisions, when the run made them

    def add(self, items, batch) -> None:
        self.raw.update(batch.raw)
        self.decisions.extend(batch.decisions)
        if batch.animals is not None:
            self.animals = [] if self.animals is None else self.animals
            self.animals.extend(batch.animals)

    def results(self, finished: RunResults) -> RunResults:
        """The run's final results (settings, backend info, times) holding what was kept."""
        return replace(finished, raw=self.raw, decisions=self.decisions, animals=self.animals)


class Counting(RunWriter):
    """The tally the console, the record and the summary read."""

    def __init__(self, tally) -> None:
        self.tally = tally

    def add(self, items, batch) -> None:
        self.tally.add(batch.decisions, batch.raw)


class ReviewPage(RunWriter):
    """deepfaune-report.html (named after the output), made as results come when its folder is known from
    the start (beside a host writer's target), else from what the run kept, once the outputs are written."""

    role = REVIEW

    def __init__(self, out_dir: Path | None, settings: RunSettings, blur_humans: bool, log: Callable[[str], None],
                 labels: Mapping[str, str | tuple[str, ...]] | None = None):
        self.settings, self.blur, self.log = settings, blur_humans, log
        self.labels = labels  # the source's human labels: the page's evaluation
        self.builder, self.failed = None, False
        self.waiting: list[tuple[Sequence[MediaItem], RunResults]] | None = [] if out_dir is None else None
        if out_dir is not None:
            self.builder = self._open(out_dir)

    def _open(self, out_dir: Path):
        from .report.page import ReportBuilder

        try:
            return ReportBuilder(out_dir, self.settings.threshold, blur_humans=self.blur, labels=self.labels)
        except OSError as err:
            self._drop(err)
            return None

    def _drop(self, err: Exception) -> None:
        self.log(f"warning: no review page: {err}")
        self.failed = True
        self.close_builder()

    def add(self, items, batch) -> None:
        if self.waiting is not None:
            self.waiting.append((items, batch))
        elif self.builder is not None:
            try:
                self.builder.add(items, batch)
            except (OSError, ValueError) as err:
                self._drop(err)

    def close(self, summary) -> list[Path]:
        from .report import report_dir, report_names

        if self.waiting is not None and not self.failed:
            self.builder = self._open(report_dir(summary))
            waiting, self.waiting = self.waiting, None
            for items, batch in waiting:
                self.add(items, batch)
        if self.builder is None:
            return []
        page, record = report_names(summary.results.output)  # runs with their own outputs keep their own
        try:
            return [self.builder.write(summary, page, record)]
        except (OSError, ValueError) as err:  # ValueError: a UnicodeError, say
            self.log(f"warning: could not write the review page in {report_dir(summary)}: {err}")
            return []
        finally:
            self.close_builder()

    def close_builder(self) -> None:
        if self.builder is not None:
            builder, self.builder = self.builder, None
            builder.close()

    def abort(self) -> None:
        self.waiting = None
        self.close_builder()


class RunRecord(RunWriter):
    """deepfaune-run.json (named after the output): what ran, on what, with which models and settings."""

    role = REVIEW

    def __init__(self, command: Sequence[str] | None, log: Callable[[str], None]):
        self.command, self.log = command, log

    def close(self, summary) -> list[Path]:
        from .report import report_dir, report_names, write_run_record

        out_dir = report_dir(summary)
        try:
            return [write_run_record(summary, out_dir, command=self.command,
                                     name=report_names(summary.results.output)[1])]
        except (OSError, ValueError) as err:
            self.log(f"warning: could not write the run record in {out_dir}: {err}")
            return []


def writing(step, store: ResultStore | None):
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
                          "command again" if store is not None else "")) from err
