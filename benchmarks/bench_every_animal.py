"""What `--every-animal` costs: images/s and classifier calls against the default, on small stand-in models.

    python benchmarks/bench_every_animal.py --images 100 [--threads 1] [--workdir /tmp/dfanimals]

Generates N 1600x1200 JPEGs like the speed benchmark's (benchmarks/bench_run.py) but smaller: 60 % empty, 30 % one
red "animal" marker, 10 % two or three markers (the stand-in detector boxes each), all 30 s apart (each image its own
sequence).  Runs `deepfaune run` in this process (the pipeline, no store, no report) with and without the option,
alternately, REPEATS times each, and counts every classifier call and the crops it took.  Small stand-ins (the
ONNX contract, a tiny network) keep a shared 2-core machine usable: their classifier costs far less than the
real ViT-L, so the crop counts, not the seconds, say what the option costs with the real models.  Prints Markdown
rows for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

REPEATS = 2


def make_images(folder: Path, n: int, seed: int = 0) -> int:
    """The season; returns how many markers were painted."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 6, 1, 6, 0, 0)
    markers = 0
    for i in range(n):
        small = rng.integers(40, 200, size=(30, 40, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(small).resize((1600, 1200), Image.BILINEAR)).copy()
        img += rng.integers(0, 12, size=img.shape, dtype=np.uint8)
        several = i % 10 == 9  # 10 %: two or three animals
        count = (2 + i // 10 % 2) if several else (1 if i % 10 in (1, 4, 7) else 0)  # 30 %: one
        for k in range(count):  # side by side, never touching: the detector keeps each
            x, y = 100 + k * 500, int(rng.integers(100, 800))
            img[y:y + 240, x:x + 280] = (220, 20, 20)
        markers += count
        exif = Image.Exif()
        exif.get_ifd(0x8769)[36867] = (t0 + timedelta(seconds=30 * i)).strftime("%Y:%m:%d %H:%M:%S")
        Image.fromarray(img).save(folder / f"IMG_{i:05d}.JPG", "JPEG", quality=92, exif=exif.tobytes())
    return markers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dfanimals"))
    args = ap.parse_args()

    from deepfaune_plugin.api import RunSettings
    from deepfaune_plugin.engine.onnx_models import OnnxClassifier
    from deepfaune_plugin.models.standins import write_standins
    from deepfaune_plugin.pipeline import run

    images = args.workdir / f"images-{args.images}"
    models = args.workdir / "models-small"
    markers = make_images(images, args.images) if not images.exists() else None
    if not (models / "deepfaune-models.json").exists():
        write_standins(models, "1.4", seed=0)

    calls: list[int] = []
    real = OnnxClassifier.__call__

    def counted(self, batch):
        calls.append(len(batch))
        return real(self, batch)

    OnnxClassifier.__call__ = counted
    best: dict[bool, float] = {}
    counts: dict[bool, tuple[int, int, int]] = {}
    for _ in range(REPEATS):
        for every in (False, True):
            calls.clear()
            settings = RunSettings(models_dir=models, threads=args.threads, every_animal=every)
            t = time.perf_counter()
            summary = run(images, settings, output=args.workdir / f"out-{int(every)}.csv", store=False, report=False,
                          progress=False, log=lambda m: None, keep_results=True)
            elapsed = time.perf_counter() - t
            best[every] = min(best.get(every, elapsed), elapsed)
            boxes = sum(d.count for d in summary.results.decisions)
            counts[every] = (len(calls), sum(calls), boxes)
    n = args.images
    if markers is not None:
        print(f"{markers} markers painted")
    print("| run | images/s | classifier calls | crops classified | animal boxes |")
    print("|---|---|---|---|---|")
    for every in (False, True):
        c, crops, boxes = counts[every]
        print(f"| {'--every-animal' if every else 'default'} | {n / best[every]:.2f} | {c} | {crops} | {boxes} |")


if __name__ == "__main__":
    main()
