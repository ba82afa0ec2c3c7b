"""Memory of a season-sized run: peak RSS for manifests of 10k to 100k files (fake backend).

    python benchmarks/bench_manifest.py --files 100000 [--workdir /tmp/dfmanifest]

Creates N tiny files in folders of 500 (one per camera-trap "card"), then runs the real pipeline
(folder host, result store, decisions, CSV writer) with a backend that returns a realistic raw
output per file without a model (1 box, 38 float32 logits on 40 % of files), each size in a fresh
process, and reports the peak RSS.  The models' own memory is in bench_run.py.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import resource, sys, time, zlib
from pathlib import Path
import numpy as np
from deepfaune_plugin.api import BackendDescription, RunSettings
from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered, build_registry, new_plugin_manager
from deepfaune_plugin.types import ANIMAL, Detection, RawResult

CARD = load_card("1.4")

class Predictor:
    classes = CARD.class_table()
    info = {"backend": "bench", "standin": True}
    def predict(self, items):
        for item in items:  # outputs depend on the file only, never on the order files come in
            key = zlib.crc32(item.relpath.encode())
            raw = RawResult(item.relpath, 4000, 3000)
            if key % 5 in (1, 3):
                raw.detections = [Detection((1000.0, 700.0, 1800.0, 1500.0), 0.9, ANIMAL)]
                raw.selected = 0
                raw.logits = np.random.default_rng(key).normal(size=38).astype(np.float32)
            yield raw
    def close(self):
        pass

class Backend:
    name = "bench"
    description = "no model"
    def describe(self, settings):
        return BackendDescription(CARD.class_table(), "bench-v1", {"backend": "bench"})
    def open(self, settings):
        return Predictor()

registry = build_registry(new_plugin_manager())
registry.backends["bench"] = Registered("bench", Backend(), "bench", "bench")
src, out, store = map(Path, sys.argv[1:4])
t = time.monotonic()
s = run(src, RunSettings(backend="bench"), output=out, store=store, registry=registry, progress=False, log=lambda m: None,
        keep_results=False)
first = time.monotonic() - t
t = time.monotonic()
run(src, RunSettings(backend="bench", threshold=0.5), output=out, store=store, registry=registry, progress=False,
    log=lambda m: None, keep_results=False)
print(s.tally.files, round(first, 1), round(time.monotonic() - t, 1),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
'''


def make_files(root: Path, n: int) -> None:
    for i in range(n):
        folder = root / f"card{i // 500:04d}"
        if i % 500 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"IMG_{i % 500:04d}.JPG"
        if not path.exists():
            path.write_bytes(b"\xff\xd8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dfmanifest"))
    args = ap.parse_args()
    print("| files | first run (s) | re-decide (s) | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|")
    for n in sorted({1_000, 10_000, args.files // 2, args.files}):
        root = args.workdir / f"src-{n}"
        make_files(root, n)
        store = args.workdir / f"store-{n}.sqlite"
        store.unlink(missing_ok=True)
        res = subprocess.run([sys.executable, "-c", CHILD, str(root), str(args.workdir / f"out-{n}.csv"), str(store)],
                             check=True, capture_output=True, text=True)
        count, first, again, rss = res.stdout.split()
        print(f"| {count} | {first} | {again} | {rss} |")


if __name__ == "__main__":
    main()
