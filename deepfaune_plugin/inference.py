"""Where a run's raw outputs come from: the result store first, the backend (here or on a Dask cluster) for the
rest, computed files stored batch by batch as they come.  Knows no host and decides nothing."""
from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import astuple
from pathlib import Path
from typing import Any, Sequence, overload

from .api import Backend, Predictor, RunSettings
from .errors import RunError, RunInterrupted
from .dates import read_carried, resolve
from .decisions import excluded_indices
from .per_file import predict_each
from .progress import Progress
from .store import ResultStore, StoreError
from .types import ANIMAL, AnimalLogits, ClassTable, MediaItem, RawResult

STORE_BATCH = 8  # files per store transaction


def check_settings(settings: RunSettings, classes: ClassTable) -> None:
    """The language and the excluded species, checked once per run against the model's classes, by the same
    rules the decisions apply (decisions.excluded_indices), before any file is decided."""
    if settings.lang not in classes.languages:
        raise RunError(f"language {settings.lang!r} is not available for model {classes.version}; "
                       f"choose one of {', '.join(classes.languages)}")
    if settings.bird and classes.bird_names is not None and settings.lang not in classes.bird_names:
        raise RunError(f"--bird: language {settings.lang!r} has no bird labels for model {classes.version}; "
                       f"choose one of {', '.join(classes.bird_names)}")
    try:
        excluded_indices(classes, settings.exclude, settings.lang)
    except ValueError as err:
        raise RunError(f"--exclude: {err} for model {classes.version}; "
                       f"known: {', '.join(classes.labels(settings.lang))}") from None


@overload
def open_store(path: Path, shared: bool = False) -> ResultStore: ...


@overload
def open_store(path: None, shared: bool = False) -> None: ...


def open_store(path: Path | None, shared: bool = False) -> ResultStore | None:
    if path is None:
        return None
    try:
        return ResultStore(path, shared)
    except StoreError as err:  # names the file already
        raise RunError(str(err)) from None
    except (OSError, sqlite3.Error, RuntimeError) as err:
        raise RunError(f"result store {path}: {err}") from err


class Inference:
    """Raw outputs for a run, chunk after chunk: the result store first, the backend for the rest.  The
    backend's models are loaded once, when the first file needs them, and kept until `close`."""

    def __init__(self, backend: Backend, settings: RunSettings, store: ResultStore | None, total: int | None,
                 progress: bool, log):
        self.backend, self.settings, self.store, self.log = backend, settings, store, log
        self.description = backend.describe(settings) if store is not None else None
        self.classes: ClassTable | None = self.description.classes if self.description else None
        self.info: dict[str, Any] = dict(self.description.info) if self.description else {}
        self.fingerprint = self.description.fingerprint if self.description else ""
        if self.description is not None:
            check_settings(settings, self.description.classes)
        self.computed = self.reused = 0
        self.bar = Progress(total) if progress and total else None
        self.predictor: Predictor | None = None
        self.cluster: tuple[Any, Any] | None = None  # (client, local cluster or None), opened on first need, kept for the run
        self._begun = False

    @property
    def stores(self) -> bool:
        return self.description is not None

    def raws(self, items: Sequence[MediaItem]) -> list[RawResult]:
        """Raw outputs of `items`, in their order and dated (`dates.resolve`); those computed are stored
        batch by batch as they come."""
        found = self._raws(items)
        return [resolve(item, found[item.relpath]) for item in items]

    def stored(self, items: Sequence[MediaItem]) -> dict[str, RawResult]:
        """The stored raw outputs of `items` (dated), by relpath; the others are left out: nothing is computed
        and no model is loaded (`deepfaune evaluate` re-decides from these)."""
        found = self._lookup(items)
        return {item.relpath: resolve(item, found[item.relpath]) for item in items if item.relpath in found}

    def _lookup(self, items: Sequence[MediaItem]) -> dict[str, RawResult]:
        raws: dict[str, RawResult] = {}
        if self.store is not None and self.stores:
            for fingerprint, group in by_fingerprint(self.fingerprint, items).items():
                raws.update(self.store.lookup(fingerprint, group))
        return raws

    def _raws(self, items: Sequence[MediaItem]) -> dict[str, RawResult]:
        raws = self._lookup(items)
        if self.settings.every_animal:
            raws = {relpath: raw for relpath, raw in raws.items() if has_animals(raw)}
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
        if stopped and not self.stores:  # a run without a store (--no-store, or a backend that stores nothing)
            raise RunInterrupted(f"interrupted after {self.computed} files; nothing was kept (no result store): "
                                 "the same command computes every file again")
        if stopped:
            raise RunInterrupted(f"interrupted: {self.computed + self.reused} files are computed and stored"
                                 + (f" in {self.store.path}" if self.store is not None else "")
                                 + "; run the same command again to resume")
        return raws

    def close(self) -> None:
        if self.bar:
            self.bar.close()
        edited = self.store.take_edited() if self.store is not None else []
        if edited:  # run, review and evaluate all close here: said once, whichever found them
            self.log(f"{len(edited)} file(s) were edited since the result store last read them (other bytes at the "
                     f"same path), e.g. {edited[0]}: their results are looked up by their new content (computed "
                     "again if it is new)")
        self.unload()
        if self.cluster is not None:
            from .distributed import disconnect

            connection, self.cluster = self.cluster, None
            disconnect(*connection)

    def unload(self) -> None:
        """Free the backend's models (a later file that needs them loads them again)."""
        if self.predictor is not None:
            predictor, self.predictor = self.predictor, None
            predictor.close()

    def class_table(self) -> ClassTable:
        """The classifier's classes: described, or learnt from the models; loaded here when no file needed them
        (a source without media, and a backend that cannot describe itself), as every run's results have one."""
        if self.classes is not None:
            return self.classes
        if self.predictor is None:
            self.predictor = self.backend.open(self.settings)
        classes = self.predictor.classes
        self._begin(classes, self.predictor.info)
        return classes

    def _begin(self, classes: ClassTable, info) -> None:
        self.classes, self.info = classes, dict(info)
        if not self._begun:
            self._begun = True
            if self.description is None:  # else checked already, before any model was loaded
                check_settings(self.settings, classes)
            if self.info.get("standin"):
                self.log(_STANDIN_BANNER)
            note = (self.info.get("device") or {}).get("note")
            if note:
                self.log(note)

    def _compute_here(self, todo, sink: "_Sink") -> bool:
        """In this process, in the order given. True when Ctrl-C stopped it."""
        if self.predictor is None:
            self.predictor = self.backend.open(self.settings)
        self._begin(self.predictor.classes, self.predictor.info)
        with _graceful_interrupt() as stop:
            for item, raw in predict_each(self.predictor, todo):
                sink.add(item, raw)
                if stop.requested:
                    break
        return stop.requested

    def _compute_on_cluster(self, todo, sink: "_Sink") -> bool:
        """On a Dask cluster (imported only here): shards on workers, results in completion order."""
        from .distributed import ClusterError, compute_on_cluster, connect

        description, scheduler = self.description, self.settings.scheduler
        assert scheduler is not None, "_raws computes on a cluster only when there is a scheduler"
        if description is not None:
            self._begin(description.classes, description.info)
        try:
            if self.cluster is None:
                self.cluster = connect(scheduler)
            with _graceful_interrupt() as stop:
                outcome = compute_on_cluster(todo, self.settings, self.settings.backend, scheduler,
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
    """Where computed results go, in whatever order they come: kept by relpath, stored batch by batch (with
    the file's own date, `dates.read_carried`; the host's date is the run's, `dates.resolve`)."""

    def __init__(self, inference: Inference, raws: dict[str, RawResult]):
        self.inference, self.raws = inference, raws
        self.batch: list[tuple[MediaItem, RawResult]] = []
        self.last_flush = time.monotonic()

    def add(self, item: MediaItem, raw: RawResult) -> None:
        read_carried(item, raw)  # what the store keeps of a date: the file's own
        self.raws[item.relpath] = raw
        self.inference.computed += 1
        if self.inference.bar:
            self.inference.bar.update(failed=raw.failure is not None)
        if not (self.inference.stores and self.inference.settings.keep_features):
            drop_features(raw)  # nowhere to keep them: a season's would fill memory (4 KiB an image)
        if self.inference.stores:
            self.batch.append((item, raw))
            if len(self.batch) >= STORE_BATCH or time.monotonic() - self.last_flush > 5.0:
                self.flush()

    def flush(self) -> None:
        store = self.inference.store
        if store is not None and self.inference.stores and self.batch:
            entries = by_fingerprint(self.inference.fingerprint, self.batch, lambda entry: entry[0])
            try:
                for fingerprint, batch in entries.items():
                    store.save(fingerprint, batch, features=self.inference.settings.keep_features)
            except (OSError, sqlite3.Error) as err:  # e.g. the disk holding the store is full
                raise RunError(f"result store {store.path}: cannot save results ({err}); what was stored before is "
                               "kept and the previous outputs are unchanged: free some space (or choose --store "
                               "elsewhere) and run the same command again") from err
        for _, raw in self.batch:  # kept in the store now; the run's decisions never read them
            drop_features(raw)
        self.batch, self.last_flush = [], time.monotonic()


def has_animals(raw: RawResult) -> bool:
    """Whether a stored result serves --every-animal, completed here where nothing is missing: an image stored
    by a default run whose only animal box (if any) is the one DeepFaune classified gets that box's outputs.  An
    image with other animal boxes is computed again (detector and every crop) and stored with its boxes' logits in
    place of the old entry, which default runs read as before: only the crops are missing, but a backend takes
    media, not stored boxes, and the detector gives the same boxes again.  Videos have no per-animal outputs."""
    if raw.animals is not None or raw.frames or raw.failure is not None:
        return True
    animals = [i for i, det in enumerate(raw.detections) if det.category == ANIMAL]
    if any(i != raw.selected for i in animals) or (animals and raw.logits is None):
        return False
    raw.animals = [AnimalLogits(i, raw.logits, raw.bird_logits) for i in animals]
    return True


def drop_features(raw: RawResult) -> None:
    """Forget a result's features (and its frames'): decisions never read them, the store has them."""
    raw.features = None
    for frame in raw.frames:
        frame.features = None


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


_STANDIN_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!! STAND-IN MODELS: random weights with DeepFaune's input/output contract.\n"
    "!! Every label and score of this run is MEANINGLESS. Install the real models:\n"
    f"!!     deepfaune models install {RunSettings.model_version}\n" + "!" * 78 + "\n"
)
