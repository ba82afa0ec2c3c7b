"""Throughput of `deepfaune run --scheduler local:N` (N worker processes of one thread) against one process.

    python benchmarks/bench_dask.py [--images 50] [--workdir /tmp/dfbench] [--workers 1 2] [--skip-threads-1]

Uses the images and full-size stand-in models of bench_run.py (run it first, or this script makes them):
the real ViT-L/14 and YOLOv8s architectures with random weights, so the compute is the real one.  Each
configuration is the real command in a child process with a fresh result store, timed from start to
exit (so model loading and cluster start-up are included, as a user pays them).  Every table, and every
stored raw output, is compared byte for byte with the single-process one.  Prints Markdown rows with
the load average, since a shared machine's figures depend on what else runs.
"""
from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import DEEPFAUNE, make_images  # noqa: E402


def timed_run(images: Path, models: Path, out: Path, store: Path, extra: list[str]) -> float:
    cmd = [DEEPFAUNE, "run", str(images), "--models-dir", str(models), "--output", str(out), "--quiet",
           "--store", str(store), "--no-report", *extra]
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t


def stored(store: Path) -> list[tuple[str, str]]:
    """Raw outputs as the result store encodes them (boxes, logits): compared exactly, not as rounded scores."""
    with sqlite3.connect(store) as db:
        return db.execute("SELECT relpath, payload FROM raw ORDER BY relpath").fetchall()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dfbench"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-threads-1", action="store_true", help="skip the single-process --threads 1 baseline")
    args = ap.parse_args()
    images = args.workdir / f"images-{args.images}"
    models = args.workdir / "models-full"
    make_images(images, args.images)
    if not (models / "deepfaune-models.json").exists():
        subprocess.run([DEEPFAUNE, "models", "stand-in", str(models), "--version", "1.4", "--full-size"], check=True)
    out_dir = args.workdir / "bench-dask"
    out_dir.mkdir(exist_ok=True)

    configs: list[tuple[str, list[str]]] = [("single process, ORT threads: all cores", [])]
    if not args.skip_threads_1:
        configs.append(("single process, --threads 1", ["--threads", "1"]))
    configs += [(f"--scheduler local:{n} ({n} worker{'s' if n > 1 else ''} x 1 thread)", ["--scheduler", f"local:{n}"])
                for n in args.workers]

    import onnxruntime
    import distributed

    print(f"{datetime.now():%Y-%m-%d} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
          f"onnxruntime {onnxruntime.__version__} · dask.distributed {distributed.__version__} · "
          f"{args.images} 12-MP images, full-size stand-ins\n")
    print("| configuration | wall (s) | images/s | vs. single process | table, raw outputs identical "
          "| load avg 1 min |")
    print("|---|---|---|---|---|---|")
    reference: tuple | None = None
    base = None
    for i, (name, extra) in enumerate(configs):
        out = out_dir / f"out-{i}.csv"
        store = out_dir / f"store-{i}.sqlite"
        for path in (out, store, Path(f"{store}-wal"), Path(f"{store}-shm")):
            path.unlink(missing_ok=True)
        load = os.getloadavg()[0]
        wall = timed_run(images, models, out, store, extra)
        got = (out.read_bytes(), stored(store))
        if reference is None:
            reference, base = got, wall
        same = ", ".join("yes" if a == b else "NO" for a, b in zip(got, reference))
        print(f"| {name} | {wall:.1f} | {args.images / wall:.2f} | x{base / wall:.2f} | {same} | "
              f"{load:.1f} → {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
