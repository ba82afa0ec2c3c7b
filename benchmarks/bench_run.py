"""Throughput and peak memory of `deepfaune run` on full-size stand-in models.

    python benchmarks/bench_run.py --images 50 [--threads 2] [--workdir /tmp/dfbench]

Generates N 12-MP JPEGs (4000×3000; 60 % empty, 40 % with one "animal" that the stand-in detector
finds, so the classifier's cost is really paid), writes full-size stand-ins (the real ViT-L/14 and
YOLOv8s architectures, random weights, ~1.3 GB) once, then times the real command in a child
process and reads its peak RSS.  Prints one Markdown table row for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

DEEPFAUNE = str(Path(sys.executable).parent / "deepfaune")  # the console script of this environment


def make_images(folder: Path, n: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 6, 1, 6, 0, 0)
    for i in range(n):
        path = folder / f"IMG_{i:05d}.JPG"
        if path.exists():
            continue
        # a textured landscape-like background (smooth noise), 12 MP
        small = rng.integers(40, 200, size=(60, 80, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(small).resize((4000, 3000), Image.BILINEAR)).copy()
        img += rng.integers(0, 12, size=img.shape, dtype=np.uint8)
        if i % 5 in (1, 3):  # 40 % with an animal
            x, y = int(rng.integers(200, 3000)), int(rng.integers(200, 2200))
            img[y:y + 600, x:x + 700] = (220, 20, 20)
        exif = Image.Exif()
        exif.get_ifd(0x8769)[36867] = (t0 + timedelta(seconds=30 * i)).strftime("%Y:%m:%d %H:%M:%S")
        Image.fromarray(img).save(path, "JPEG", quality=92, exif=exif.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dfbench"))
    ap.add_argument("--detector", default="DFbsMDS")
    args = ap.parse_args()
    images = args.workdir / f"images-{args.images}"
    models = args.workdir / "models-full"
    t = time.monotonic()
    make_images(images, args.images)
    print(f"images ready ({time.monotonic() - t:.0f} s)", file=sys.stderr)
    if not (models / "deepfaune-models.json").exists():
        subprocess.run([DEEPFAUNE, "models", "stand-in", str(models), "--version", "1.4", "--full-size"], check=True)
    out = args.workdir / "out.csv"
    cmd = [DEEPFAUNE, "run", str(images), "--models-dir", str(models), "--output", str(out), "--quiet",
           "--detector", args.detector]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    # A fresh intermediate process whose only child is the run: its RUSAGE_CHILDREN peak is the run's own.
    probe = ("import resource, subprocess, sys, time; t = time.monotonic(); "
             "subprocess.run(sys.argv[1:], check=True, stderr=subprocess.DEVNULL); "
             "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    res = subprocess.run([sys.executable, "-c", probe, *cmd, "--no-store"], check=True, capture_output=True, text=True)
    wall_text, rss_kib = res.stdout.split()
    wall, rss = float(wall_text), int(rss_kib) / 1024  # MiB (Linux reports KiB)
    import pandas as pd

    table = pd.read_csv(out, keep_default_na=False)
    animals = int((table["count"] > 0).sum())
    import onnxruntime

    print(f"| {datetime.now():%Y-%m-%d} | {platform.processor() or platform.machine()} {os.cpu_count()} cores | "
          f"onnxruntime {onnxruntime.__version__} | {args.images} images ({animals} with an animal box) | "
          f"threads {args.threads or 'all'} | {args.detector} | {wall:.1f} s | {args.images / wall:.2f} images/s | "
          f"{rss:.0f} MiB |")


if __name__ == "__main__":
    main()
