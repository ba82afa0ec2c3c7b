"""Inference spread over a Dask cluster: shards of files go to workers, raw outputs come back to the client.

The client keeps the result store and makes every decision; workers only turn media into `RawResult`s,
so a cluster run stores exactly what a single-process run stores and resumes the same way.  Dask is
imported only inside `compute_on_cluster`: a run without a scheduler never loads it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .api import Predictor, RunSettings
from .errors import DeepfauneError
from .dates import read_carried
from .per_file import predict_each
from .types import ClassTable, MediaItem, RawResult

#: A shard whose task raised is resubmitted this many times; a shard whose worker died is rescheduled
#: by the scheduler itself (up to `distributed.scheduler.allowed-failures` times).
SHARD_RETRIES = 2
LOCAL_PREFIX = "local:"
SHARDS_PER_SLOT = 4


class ClusterError(DeepfauneError):
    """The cluster cannot be reached or started, or its workers disagree about the models."""


@dataclass
class ShardResult:
    """What one task sends back: raw outputs in shard order, and what the worker's models are."""

    index: int
    results: list[RawResult]
    classes: ClassTable
    info: dict[str, Any]
    worker: str  # host:pid of the process that computed it


@dataclass
class ClusterOutcome:
    classes: ClassTable | None = None
    info: dict[str, Any] = field(default_factory=dict)
    computed: int = 0  # results handed to on_result (each relpath once)
    duplicates: int = 0  # results ignored because their relpath had already arrived
    shards: int = 0  # shards completed
    stopped: bool = False  # should_stop() ended the run early


def make_shards(items: Sequence[MediaItem], size: int) -> list[list[MediaItem]]:
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def balanced_shard_size(files: int, slots: int, largest: int) -> int:
    """At most `largest` files, and at least SHARDS_PER_SLOT shards per worker thread present at the start,
    so that a small run keeps every worker busy to the end (a cluster still scaling up counts as 1)."""
    spread = -(-files // (SHARDS_PER_SLOT * max(slots, 1)))
    return max(1, min(largest, spread))


def worker_settings(settings: RunSettings) -> RunSettings:
    """What a worker opens: without --threads, one ONNX Runtime thread per task, since Dask's threads
    (one per core it was given) are the worker's parallelism; a models directory made absolute here, since
    workers start elsewhere; no scheduler."""
    models_dir = Path(os.path.abspath(settings.models_dir)) if settings.models_dir is not None else None
    return dataclasses.replace(settings, scheduler=None, threads=settings.threads or 1, models_dir=models_dir)


def settings_key(settings: RunSettings) -> str:
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:16]


# -- on the worker ---------------------------------------------------------------------------------------
_PREDICTORS: dict[tuple[str, str], Predictor] = {}
_LOCK = threading.Lock()


def worker_predictor(backend_name: str, settings: RunSettings) -> Predictor:
    """Models are loaded (and their files hash-checked) once per worker process, then reused by every shard.

    Only the latest run's models are kept: a long-lived cluster serving runs of other settings does not
    pile up 1.2 GB classifiers."""
    key = (backend_name, settings_key(settings))
    with _LOCK:
        if key not in _PREDICTORS:
            from .plugins import default_registry  # the worker's own plugins, as installed where it runs

            _PREDICTORS.clear()  # not closed: a shard of another run may still be using it; freed after
            _PREDICTORS[key] = default_registry().backend(backend_name).open(settings)
        return _PREDICTORS[key]


def run_shard(index: int, items: list[MediaItem], settings: RunSettings, backend_name: str) -> ShardResult:
    """A Dask task: the raw outputs of a shard.

    Each file's own date (EXIF, a video's container or file time) is read here, where the files are opened
    anyway (`dates.read_carried`); the host's date is the client's, as in a single-process run."""
    predictor = worker_predictor(backend_name, settings)
    results = []
    for item, raw in predict_each(predictor, items):  # one file's exception is its failure, not the shard's
        read_carried(item, raw)
        results.append(raw)
    if len(results) != len(items):
        raise RuntimeError(f"backend {backend_name!r} returned {len(results)} results for {len(items)} files")
    return ShardResult(index=index, results=results, classes=predictor.classes, info=dict(predictor.info),
                       worker=f"{socket.gethostname()}:{os.getpid()}")


# -- on the client ---------------------------------------------------------------------------------------
def _import_dask():
    try:
        import distributed
    except ImportError as err:
        raise ClusterError("--scheduler needs Dask: pip install 'deepfaune-plugin[dask]' "
                           "(or pip install 'dask[distributed]')") from err
    return distributed


def connect(address: str):
    """A Client for `address`, or for a new LocalCluster of N single-threaded worker processes ("local:N")."""
    distributed = _import_dask()
    if address.startswith(LOCAL_PREFIX):
        try:
            n = int(address[len(LOCAL_PREFIX):])
        except ValueError:
            n = 0
        if n < 1:
            raise ClusterError(f"--scheduler {address}: expected local:N with N >= 1 worker processes")
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(address, timeout="30s"), None
    except (OSError, TimeoutError, ValueError) as err:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {err}") from err


def _check_info(expected: Mapping[str, Any] | None, shard: ShardResult, first: ShardResult | None) -> None:
    """Every worker must run the models the client fingerprinted, or the store would mix models."""
    reference = first.info if first is not None else expected
    if reference is None:
        return
    differing = sorted(k for k in reference if k in shard.info and shard.info[k] != reference[k]
                       and k != "device")  # where a worker runs (GPU or CPU) is its own business
    if differing:
        raise ClusterError(f"worker {shard.worker} runs other models than "
                           f"{'worker ' + first.worker if first is not None else 'this computer'} "
                           f"({', '.join(differing)} differ: {shard.info.get(differing[0])!r} vs "
                           f"{reference[differing[0]]!r}); point every worker at the same models directory "
                           f"(DEEPFAUNE_MODELS on a shared file system)")


def compute_on_cluster(
    todo: list[MediaItem],
    settings: RunSettings,
    backend_name: str,
    address: str,
    on_result: Callable[[MediaItem, RawResult], None],
    shard_size: int = 32,
    *,
    should_stop: Callable[[], bool] | None = None,
    expected_info: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    client=None,
) -> ClusterOutcome:
    """Compute `todo` on the cluster at `address`; `on_result` receives each file once, in completion order.

    Shards hold at most `shard_size` files (fewer when the run is small: see `balanced_shard_size`).
    A shard whose worker is lost is redone elsewhere; a relpath that arrives twice is ignored.
    `should_stop` is asked after each shard: when true, the shards not yet done are cancelled.
    `expected_info` (the backend's description) is compared with what workers load, before anything is kept.
    `client`: a connection the caller keeps for several calls (`connect`); else one is opened and closed here.
    """
    outcome = ClusterOutcome()
    if not todo:
        return outcome
    distributed = _import_dask()
    by_relpath = {item.relpath: item for item in todo}
    opened = worker_settings(settings)
    own = client is None
    cluster = None
    if own:
        client, cluster = connect(address)
    futures = []
    try:
        slots = sum(client.nthreads().values())  # tasks the cluster runs at once, now
        shards = make_shards(todo, balanced_shard_size(len(todo), slots, shard_size))
        if log:
            log(f"computing {len(todo)} files in {len(shards)} shards on the Dask cluster at {address} "
                f"({slots} worker threads now)")
        run = uuid.uuid4().hex[:8]
        futures = [client.submit(run_shard, i, shard, opened, backend_name, key=f"deepfaune-{run}-{i}",
                                 retries=SHARD_RETRIES, pure=False) for i, shard in enumerate(shards)]
        first: ShardResult | None = None
        seen: set[str] = set()
        for future in distributed.as_completed(futures):
            try:
                shard: ShardResult = future.result()
            except DeepfauneError:
                raise
            except Exception as err:  # KilledWorker, cancelled, a backend bug: name the shard; what came is stored
                raise ClusterError(f"shard {future.key} failed: {type(err).__name__}: {err}") from err
            finally:
                future.release()
            _check_info(expected_info, shard, first)
            if first is None:
                first = shard
                outcome.classes, outcome.info = shard.classes, dict(shard.info)
            outcome.shards += 1
            for raw in shard.results:
                if raw.relpath in seen or raw.relpath not in by_relpath:
                    outcome.duplicates += 1
                    continue
                seen.add(raw.relpath)
                outcome.computed += 1
                on_result(by_relpath[raw.relpath], raw)
            if should_stop is not None and should_stop():
                outcome.stopped = True
                break
        missing = len(by_relpath) - len(seen)
        if not outcome.stopped and missing:
            raise ClusterError(f"{missing} files came back from no worker (backend {backend_name!r} "
                               "returned results under other names)")
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        if own:
            disconnect(client, cluster)
    return outcome


def disconnect(client, cluster) -> None:
    client.close()
    if cluster is not None:
        cluster.close()
