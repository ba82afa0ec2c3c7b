"""Issue 34.5: how the review that learns scales. A result store with N crops' features (default 100,000 x 1024
float16, as DeepFaune's ViT-L keeps them; 40 clusters: random centres, noise 0.8 of a centre's spread), then: reading them into
the review's index (chunks of 4,096 files, projected to 128 dims: its size in memory), one `similar` query (the 24
nearest of every picture), the learn order's first computation (sequences of 5 pictures, `--labelled` pictures
labelled: their max cosine to every sequence, in blocks), one label more (the incremental update) and the
ordering of the queue; plus how many of the 24 nearest are of the query's own cluster, projected and by the full features,
and how many are the full cosine's own 24 nearest (20 queries).

    python benchmarks/bench_similar.py --crops 100000 --work /tmp/bench-similar

Nothing is timed in the tests; the figures go to benchmarks/RESULTS.md by hand."""
from __future__ import annotations

import argparse
import tracemalloc
import sqlite3
import time
from pathlib import Path

import numpy as np

from deepfaune_plugin.review.similar import FeatureIndex, LearnOrder, _unit
from deepfaune_plugin.store import ResultStore


def make_store(path: Path, crops: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, width)).astype(np.float32)
    ResultStore(path).close()
    full = np.empty((crops, width), np.float16)
    cluster = np.empty(crops, np.int64)
    with sqlite3.connect(path) as db:
        for start in range(0, crops, 10000):
            n = min(10000, crops - start)
            cluster[start:start + n] = rng.integers(0, 40, n)
            values = centres[cluster[start:start + n]] + 0.8 * rng.normal(size=(n, width)).astype(np.float32)
            full[start:start + n] = values.astype(np.float16)
            db.executemany("INSERT INTO features VALUES ('fp', ?, -1, 0, ?, ?)",
                           [(f"c{start + i:07d}", width, full[start + i].astype("<f2").tobytes()) for i in range(n)])
    return full, cluster


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crops", type=int, default=100_000)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--labelled", type=int, default=20_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-similar"))
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    store = a.work / "store.sqlite"
    store.unlink(missing_ok=True)
    t = time.perf_counter()
    full, cluster = make_store(store, a.crops, a.width)
    print(f"store of {a.crops:,} crops x {a.width} float16 made in {time.perf_counter() - t:.1f} s "
          f"({store.stat().st_size / 2**20:.0f} MiB)")
    files = {f"st/{i:07d}.jpg": ("fp", f"c{i:07d}") for i in range(a.crops)}
    tracemalloc.start()
    t = time.perf_counter()
    index = FeatureIndex.read(store, files)
    took = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"index read and projected: {took:.1f} s; {index.unit.shape} float32 = {index.nbytes / 2**20:.1f} MiB "
          f"(projection included); peak memory while reading {peak / 2**20:.0f} MiB (tracemalloc)")
    names = list(files)
    times = []
    for q in range(20):
        t = time.perf_counter()
        index.similar(names[q * 997], 24)
        times.append(time.perf_counter() - t)
    print(f"similar (24 of {a.crops:,}): median {np.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms")
    exact = _unit(full.astype(np.float32))
    recall, same, same_exact = [], [], []
    for q in range(20):
        own = q * 997
        scores = exact @ exact[own]
        scores[own] = -np.inf
        truth = set(np.argsort(-scores)[:24].tolist())
        got = {index.rows[n] for n, _ in index.similar(names[own], 24)}
        recall.append(len(truth & got) / 24)
        same.append(np.mean(cluster[list(got)] == cluster[own]))
        same_exact.append(np.mean(cluster[list(truth)] == cluster[own]))
    print(f"the 24 nearest: of the query's own cluster {np.mean(same):.3f} projected, {np.mean(same_exact):.3f} "
          f"by the full {a.width}-dim cosine; the same 24 as the full cosine's: {np.mean(recall):.3f}")
    seqs = [names[i:i + 5] for i in range(0, len(names), 5)]
    rng = np.random.default_rng(1)
    margins = rng.random(len(seqs))
    t = time.perf_counter()
    order = LearnOrder.of(index, seqs, margins)
    built = time.perf_counter() - t
    labelled = set(rng.choice(names, a.labelled, replace=False).tolist())
    t = time.perf_counter()
    order.learn(labelled)
    first = time.perf_counter() - t
    t = time.perf_counter()
    order.learn(labelled | set(seqs[7]))
    more = time.perf_counter() - t
    t = time.perf_counter()
    order.order(list(range(len(seqs))), [False] * len(seqs))
    sort = time.perf_counter() - t
    print(f"learn order on {len(seqs):,} sequences: vectors {built:.2f} s; {a.labelled:,} labelled {first:.2f} s; "
          f"5 more {more * 1000:.1f} ms; the queue ordered {sort:.2f} s")


if __name__ == "__main__":
    main()
