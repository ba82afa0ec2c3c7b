"""One run, in one direction: manifest → media → raw outputs → decisions → writers.

The media go through in chunks of whole sequences (a folder's images, a video), in DeepFaune's numbering
order: each chunk's raw outputs come from `inference` (dated there, `dates`), are decided, handed to every
writer (the host's outputs, the tally, the review page, the run record: `writers`) and forgotten, so a season
needs no more memory than a chunk when the host lists and writes lazily.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from .adapted import offer_for, open_decider
from .animals import decide_animals
from .api import Host, RunResults, RunSettings
from .corrections import check_labels, conflict_note, conflicts, overlay, overlay_boxes
from .decisions import decide_run
from .errors import DeepfauneError, RunError
from .inference import Inference, open_store
from .plugins import PluginError, Registry, default_registry
from .runlog import host_log
from .sequences import chunks
from .store import default_store_path
from .types import Manifest, Problem
from .summary import RunSummary, Tally
from .writers import OUTPUT, Counting, KeptResults, ReviewPage, RunRecord, RunWriter, open_output


#: Files (whole sequences) decided and handed to the host at a time: a run's memory grows with this, not
#: with the season, when the host lists its media lazily and writes as results come (the folder host does).
CHUNK_FILES = 1000
#: The same on a Dask cluster, whose workers each take shards of a chunk: large enough that a chunk's tail
#: (workers idle while its last shards finish) costs nothing, small enough to keep memory bounded.
CLUSTER_CHUNK_FILES = 10_000


def resolve_host(registry: Registry, name: str, source: Path) -> Host:
    if name != "auto":
        return registry.host(name)
    candidates = [r.obj for r in registry.hosts.values() if _safe_detect(r.obj, source)]
    if not candidates:
        raise RunError(f"{source}: no registered host recognises this source; "
                       f"choose one with --host ({', '.join(sorted(registry.hosts))})")
    best = max(h.priority for h in candidates)
    top = [h for h in candidates if h.priority == best]
    if len(top) > 1:
        raise RunError(f"{source}: several hosts recognise this source ({', '.join(h.name for h in top)}); "
                       "choose one with --host")
    return top[0]


def _safe_detect(host: Host, source: Path) -> bool:
    try:
        return bool(host.detect(source))
    except Exception:  # a plugin's detect() must never break auto-detection
        return False


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
    adapted: str | None = None,
) -> RunSummary:
    """One run. `store`: True = the user's result store (shared by all sources), a path, or False/None = none.

    Besides the host's outputs, every run writes its record (deepfaune-run.json) and, unless
    `report` is off, the review page (deepfaune-report.html) next to the first output, both named
    after `output` when one is given (report.report_names).

    Files go through in chunks of whole sequences (`CHUNK_FILES`): inferred, dated, decided, handed to
    every writer (writers.py), then forgotten, unless `keep_results` (the summary then holds every file's
    raw output and decision).  A host that writes at the end (its `open_writer` gives None) gets them all.

    `adapted`: the name of a site head (`deepfaune adapt`) that decides instead of DeepFaune's, from the features
    in the result store (adapted.py); the results name it (`RunResults.head`).  None: DeepFaune's head, as always.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    registry = registry or default_registry()
    host_options = dict(host_options or {})
    host_options["output"] = Path(output) if output else None  # the one way a host learns of --output
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
    with host_log(log):
        manifest = _read(adapter, source, host_options)
        settings = _source_settings(manifest, settings, adapter, source, log)
        problems = _ProblemLog(manifest.problems, log)
        problems.flush()

        tally, kept = Tally(), KeptResults()
        result_store = open_store(default_store_path() if store is True else (store or None))
        writers: list[RunWriter] = []
        dropping = None  # --drop-repeats: the run's outputs with the repeats set aside
        try:
            inference = Inference(backend, settings, result_store, manifest.size, progress, log)
            try:
                decider = None if adapted is None else open_decider(adapted, inference, result_store, settings)
                if decider is None and (offer := offer_for(inference, settings, source)) is not None:
                    log(offer)  # a site head shown to help here: said, never used unasked
                outputs = open_output(adapter, manifest, host_options, result_store)
                writers = [outputs, Counting(tally), *([kept] if keep_results else []),
                           *([ReviewPage(outputs.out_dir, settings, blur_humans, log, manifest.human_labels)]
                             if report else []),
                           RunRecord(command, log)]
                last_seqnum = 0
                disputed: dict = {}  # files two reviewers labelled differently: said once, at the end
                size = CLUSTER_CHUNK_FILES if settings.scheduler else CHUNK_FILES
                blocks = chunks(manifest.blocks(keep=keep_results), size)
                if settings.drop_repeats:  # a first pass over every file's boxes (repeats.py)
                    from .repeats import RepeatRun

                    dropping = RepeatRun(inference, backend, settings, result_store, log)
                    blocks = iter(dropping.survey(blocks))
                for chunk in blocks:
                    raws = inference.raws(chunk) if dropping is None else dropping.raws(chunk)
                    classes = inference.class_table()
                    if decider is not None:  # the site head's logits, from the stored features
                        raws, classes = decider.raws(chunk, raws), decider.classes(classes)
                    decisions = decide_run(chunk, raws, classes, settings, first_seqnum=last_seqnum + 1)
                    if result_store is not None:  # what people decided is never replaced by a run
                        labels = result_store.human_labels(chunk)
                        check_labels(labels, classes)
                        disputed.update(conflicts(labels))
                        decisions = overlay(decisions, labels, classes, settings.lang)
                    last_seqnum = max((d.seqnum for d in decisions), default=last_seqnum)
                    by_path = {raw.relpath: raw for raw in raws}
                    if result_store is not None:  # the boxes people drew, over the detector's
                        decisions, by_path = overlay_boxes(decisions, by_path, result_store.human_boxes(chunk))
                    batch = RunResults(settings=settings, classes=classes,
                                       raw=by_path, decisions=decisions,
                                       backend_info=dict(inference.info), output=host_options["output"],
                                       started=started,
                                       animals=decide_animals(by_path, decisions, classes, settings)
                                       if settings.every_animal else None, head=adapted)
                    for writer in writers:
                        writer.add(chunk, batch)
                    problems.flush()
                classes = inference.class_table()  # a source without media: from the models
                if decider is not None:
                    classes = decider.classes(classes)
                    if (note := decider.note()) is not None:
                        log(note)
                if (note := conflict_note(disputed)) is not None:
                    log(note)
            finally:
                inference.close()
                if dropping is not None:
                    dropping.close()
            if inference.reused:
                log(f"{inference.reused} of {tally.files} files already computed"
                    + (f" (result store {result_store.path})" if result_store is not None else ""))
            finished = RunResults(
                settings=settings, classes=classes, raw={}, decisions=[],
                backend_info=dict(inference.info, computed=inference.computed, reused=inference.reused),
                output=host_options["output"], started=started, finished=datetime.now(), head=adapted)
            summary = RunSummary(results=kept.results(finished), manifest=manifest, written=[],
                                 elapsed=0.0, problems=list(manifest.problems), tally=tally)
            if dropping is not None:
                summary.repeats = dropping.repeats.groups
            for writer in writers:  # outputs first: the page and the record list what they wrote
                summary.elapsed = time.monotonic() - t0
                files = writer.close(summary)
                (summary.written if writer.role == OUTPUT else summary.review_files).extend(files)
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        finally:
            if result_store is not None:
                result_store.close()
    return summary


def read_to_look(adapter: Host, source: Path, options: Mapping[str, Any], log) -> tuple[Manifest, list]:
    """The manifest and its media as blocks, for a command that writes nothing of the user's (evaluate,
    review): listed whole, then what the host holds for a write (`Host.release`: a Camtrap DP package's lock)
    given back, so that a run or another tool can go on meanwhile."""
    with host_log(log):
        manifest = adapter.read(source, options)
        try:
            blocks = list(manifest.blocks())
        finally:
            adapter.release(manifest)
    return manifest, blocks


def _read(adapter: Host, source: Path, options: Mapping[str, Any]) -> Manifest:
    try:
        return adapter.read(source, options)
    except DeepfauneError:
        raise
    except (OSError, ValueError) as err:
        raise RunError(f"{source}: cannot read as a {adapter.name} source: {err}") from err


def _source_settings(manifest: Manifest, settings: RunSettings, adapter: Host, source: Path, log) -> RunSettings:
    """The settings a source requires over the user's (a Timelapse file with its own boxes: "existing")."""
    if not manifest.detector_mode or manifest.detector_mode == settings.detector_mode:
        return settings
    log(f"detector mode {manifest.detector_mode} (the {adapter.name} source asks for it) "
        f"instead of {settings.detector_mode}")
    try:
        return replace(settings, detector_mode=manifest.detector_mode)
    except ValueError as err:
        raise RunError(f"{source}: {err}") from err


class _ProblemLog:
    """Warnings about a source's entries, said as the (possibly lazy) listing finds them."""

    def __init__(self, problems: list[Problem], log):
        self.problems, self.log, self.said = problems, log, 0

    def flush(self) -> None:
        for problem in self.problems[self.said:]:
            self.log(f"warning: {problem.relpath}: {problem.reason}")
        self.said = len(self.problems)
