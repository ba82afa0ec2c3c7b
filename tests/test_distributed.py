"""`deepfaune run --scheduler`: the same run on a Dask cluster of 2 worker processes, on stand-in models."""
from __future__ import annotations

import functools
import importlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from deepfaune_plugin import distributed as dfd  # noqa: E402
from deepfaune_plugin.api import RunSettings  # noqa: E402
from deepfaune_plugin.cli import main  # noqa: E402
from deepfaune_plugin.pipeline import run  # noqa: E402
from deepfaune_plugin.plugins import default_registry  # noqa: E402
from deepfaune_plugin.types import MediaItem, RawResult  # noqa: E402
from imagegen import GREEN, RED, make_jpeg  # noqa: E402

T0 = datetime(2024, 6, 1, 5, 30, 0)
N_FILES = 31  # 28 images + 1 undated + 2 broken files


@pytest.fixture(scope="module")
def season(tmp_path_factory) -> Path:
    """Three cameras of bursts; animals (red), people (green), empty frames, an undated image, broken files."""
    src = tmp_path_factory.mktemp("season")
    for cam in range(3):
        for i in range(9 + (cam == 0)):
            blobs = [(RED, (80 + 30 * i, 60, 420 + 20 * i, 380))] if i % 3 else []
            if cam == 2 and i == 4:
                blobs = [(GREEN, (100, 100, 300, 500))]
            make_jpeg(src / f"cam{cam}" / f"IMG_{i:04d}.JPG", date=T0 + timedelta(seconds=4 * i + 60 * cam),
                      blobs=blobs, seed=100 * cam + i)
    make_jpeg(src / "cam1" / "nodate.jpg", blobs=[(RED, (200, 150, 500, 450))], seed=7)
    (src / "cam1" / "zero.jpg").write_bytes(b"")
    (src / "cam2" / "broken.jpg").write_text("not an image")
    return src


@pytest.fixture(scope="module")
def reference(season: Path, standin_models: Path, tmp_path_factory) -> dict:
    """The single-process run every cluster run must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("single")
    store = out / "store.sqlite"
    summary = run(season, RunSettings(models_dir=standin_models), output=out / "out.csv", store=store,
                  progress=False, report=False, log=lambda msg: None)
    assert summary.results.backend_info["computed"] == N_FILES
    return {"csv": (out / "out.csv").read_bytes(), "store": _stored(store)}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local


def _stored(store: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT relpath, payload FROM raw ORDER BY relpath").fetchall()


def _cluster_run(season, standin_models, out: Path, scheduler: str):
    return run(season, RunSettings(models_dir=standin_models, scheduler=scheduler), output=out / "out.csv",
               store=out / "store.sqlite", progress=False, report=False, log=lambda msg: None)


def test_cli_local_cluster_matches_single_process_run(season, standin_models, reference, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["run", str(season), "--models-dir", str(standin_models), "--output", str(out),
                 "--store", str(tmp_path / "store.sqlite"), "--scheduler", "local:2", "-q", "--no-report"]) == 3  # 2 bad files
    assert re.search(r"computing 31 files in \d+ shards on the Dask cluster at local:2 \(2 worker threads",
                     capsys.readouterr().err)
    assert out.read_bytes() == reference["csv"]
    stored = _stored(tmp_path / "store.sqlite")
    assert stored == reference["store"] and len(stored) == N_FILES - 2  # failures are never stored
    record = json.loads((tmp_path / "out-run.json").read_text())  # named after the output
    assert record["settings"]["scheduler"] == "local:2"


def test_cluster_fills_the_same_store_a_single_process_run_resumes_from(season, standin_models, reference,
                                                                       cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(dfd, "compute_on_cluster", functools.partial(dfd.compute_on_cluster, shard_size=3))
    first = _cluster_run(season, standin_models, tmp_path, cluster.scheduler_address)
    assert (first.results.backend_info["computed"], first.results.backend_info["reused"]) == (N_FILES, 0)
    assert _stored(tmp_path / "store.sqlite") == reference["store"]
    # the same command without a cluster: only the 2 broken files (never stored) are tried again
    (tmp_path / "out.csv").unlink()
    again = run(season, RunSettings(models_dir=standin_models), output=tmp_path / "out.csv",
                store=tmp_path / "store.sqlite", progress=False, report=False, log=lambda msg: None)
    assert (again.results.backend_info["computed"], again.results.backend_info["reused"]) == (2, N_FILES - 2)
    assert (tmp_path / "out.csv").read_bytes() == reference["csv"]


def test_a_cluster_run_in_chunks_connects_once_and_writes_the_same_table(season, standin_models, reference,
                                                                          tmp_path, monkeypatch, capsys):
    import deepfaune_plugin.pipeline as pipeline

    connections = []
    connect = dfd.connect
    monkeypatch.setattr(dfd, "connect", lambda address: connections.append(address) or connect(address))
    monkeypatch.setattr(pipeline, "CLUSTER_CHUNK_FILES", 10)  # the cameras' 10 + 11 + 10 files: three chunks
    out = tmp_path / "out.csv"
    assert main(["run", str(season), "--models-dir", str(standin_models), "--output", str(out),
                 "--store", str(tmp_path / "store.sqlite"), "--scheduler", "local:2", "-q", "--no-report"]) == 3  # 2 bad files
    assert connections == ["local:2"]
    assert re.findall(r"computing (\d+) files", capsys.readouterr().err) == ["10", "11", "10"]
    assert out.read_bytes() == reference["csv"]


def test_models_are_loaded_once_per_worker_process(season, standin_models, cluster):
    items = [MediaItem(p, p.relative_to(season).as_posix(), p.parent.name) for p in sorted(season.rglob("IMG_*"))]
    got: list[tuple[str, RawResult]] = []
    settings = RunSettings(models_dir=standin_models)
    for _ in range(2):
        got.clear()
        outcome = dfd.compute_on_cluster(items, settings, "deepfaune", cluster.scheduler_address,
                                         lambda item, raw: got.append((item.relpath, raw)), shard_size=2)
        assert (outcome.shards, outcome.computed, outcome.duplicates) == (14, 28, 0)
        assert sorted(rel for rel, _ in got) == sorted(item.relpath for item in items)
        assert all(raw.relpath == rel for rel, raw in got)
    with distributed.Client(cluster.scheduler_address) as client:
        loaded = client.run(lambda: len(importlib.import_module("deepfaune_plugin.distributed")._PREDICTORS))
    assert sorted(loaded.values()) in ([1, 1], [0, 1])  # never one per shard or per run


def test_workers_with_other_models_are_refused_before_anything_is_kept(season, standin_models, cluster):
    items = [MediaItem(p, p.name, "cam0") for p in sorted((season / "cam0").glob("IMG_*"))[:3]]
    kept = []
    with pytest.raises(dfd.ClusterError, match="runs other models than this computer.*files differ"):
        dfd.compute_on_cluster(items, RunSettings(models_dir=standin_models), "deepfaune", cluster.scheduler_address,
                               lambda item, raw: kept.append(raw), expected_info={"files": {"classifier": "x"}})
    assert kept == []


def test_worker_killed_mid_run_changes_nothing(season, standin_models, reference, cluster, tmp_path, monkeypatch):
    """SIGKILL a worker while it computes a shard: the shard is redone elsewhere, nothing counted twice."""
    monkeypatch.setattr(dfd, "compute_on_cluster", functools.partial(dfd.compute_on_cluster, shard_size=2))
    killed: dict = {}

    def assassin():
        with distributed.Client(cluster.scheduler_address) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not killed:
                keys = client.run_on_scheduler(_deepfaune_tasks)
                busy = {w: [k for k in ks if str(k).startswith("deepfaune-")] for w, ks in client.processing().items()}
                busy = {w: ks for w, ks in busy.items() if ks}
                if 0 < len(keys) < 16 and busy:  # a shard of the 16 done, others running: mid-run
                    worker, shard_keys = next(iter(busy.items()))
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, keys=shard_keys)
                time.sleep(0.02)

    thread = threading.Thread(target=assassin)
    thread.start()
    try:
        summary = _cluster_run(season, standin_models, tmp_path, cluster.scheduler_address)
    finally:
        thread.join()
    assert killed, "no worker was caught computing a shard"
    assert summary.results.backend_info["computed"] == N_FILES
    assert (tmp_path / "out.csv").read_bytes() == reference["csv"]
    assert _stored(tmp_path / "store.sqlite") == reference["store"]


def _deepfaune_tasks(dask_scheduler) -> list[str]:
    return [str(k) for k in dask_scheduler.tasks if str(k).startswith("deepfaune-")]


def test_a_run_without_scheduler_never_imports_dask(standin_models, tmp_path):
    src = tmp_path / "src"
    make_jpeg(src / "a.jpg", date=T0, blobs=[(RED, (100, 100, 400, 400))])
    make_jpeg(src / "b.jpg", date=T0 + timedelta(seconds=3), seed=1)
    code = (
        "import sys; from pathlib import Path\n"
        "from deepfaune_plugin.api import RunSettings\n"
        "from deepfaune_plugin.pipeline import run\n"
        f"s = run(Path({str(src)!r}), RunSettings(models_dir=Path({str(standin_models)!r})), "
        f"output=Path({str(tmp_path / 'out.csv')!r}), progress=False, log=lambda m: None)\n"
        "assert s.results.backend_info['computed'] == 2\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_scheduler_changes_no_fingerprint_and_workers_get_one_thread(standin_models):
    backend = default_registry().backend("deepfaune")
    plain = RunSettings(models_dir=standin_models)
    clustered = RunSettings(models_dir=standin_models, scheduler="tcp://10.0.0.1:8786")
    assert backend.describe(plain).fingerprint == backend.describe(clustered).fingerprint
    opened = dfd.worker_settings(clustered)
    assert (opened.scheduler, opened.threads, opened.models_dir) == (None, 1, standin_models)
    assert dfd.worker_settings(RunSettings(threads=4)).threads == 4
    assert dfd.worker_settings(RunSettings(models_dir=Path("rel/models"))).models_dir == Path.cwd() / "rel/models"
    assert dfd.settings_key(opened) != dfd.settings_key(dfd.worker_settings(RunSettings(models_dir=standin_models,
                                                                                        threads=2)))


def test_shards_and_bad_addresses():
    items = [MediaItem(Path(f"/x/{i}.jpg"), f"{i}.jpg", "x") for i in range(7)]
    assert [[i.relpath for i in s] for s in dfd.make_shards(items, 3)] == [["0.jpg", "1.jpg", "2.jpg"],
                                                                         ["3.jpg", "4.jpg", "5.jpg"], ["6.jpg"]]
    with pytest.raises(ValueError):
        dfd.make_shards(items, 0)
    for address in ("local:0", "local:two"):
        with pytest.raises(dfd.ClusterError, match="local:N with N >= 1"):
            dfd.connect(address)
    outcome = dfd.compute_on_cluster([], RunSettings(), "deepfaune", "tcp://nowhere:1", lambda i, r: None)
    assert outcome.computed == 0  # nothing to do: no connection attempted


def test_small_runs_are_cut_finer_to_keep_every_worker_busy():
    assert dfd.balanced_shard_size(50, 2, 32) == 7  # 8 shards for 2 worker threads
    assert dfd.balanced_shard_size(50, 1, 32) == 13
    assert dfd.balanced_shard_size(50, 0, 32) == 13  # a cluster still scaling up: as if one worker
    assert dfd.balanced_shard_size(100_000, 64, 32) == 32  # large runs: the largest shard
    assert dfd.balanced_shard_size(3, 2, 32) == 1
