"""Issue 34.6: labels needed vs accuracy, DeepFaune's head against an adapted one, without the real weights.

The task: synthetic scenes on the small stand-in models, each with one animal marker whose shade is its
"species" (four shades; the stand-in detector finds every one, the stand-in backbone's features tell them apart,
and the stand-in head calls them all the same: genette).  One run keeps every crop's features; then for each
label budget the first L files (balanced over species) are labelled, `deepfaune adapt` fits a head on them, and
`deepfaune run --adapted` decides the other files from the store; accuracy is measured on those unlabelled files.
Then the time `adapt`'s fit takes for 10,000 labelled crops of 1024 features (DeepFaune's width), 38 classes.

What it proves: the whole path (labels -> stored features -> fitted head -> re-decided run, with DeepFaune's
decision rules) works and learns classes DeepFaune lacks from a few labels, at the speed given.  What it cannot:
how many labels real species on real photos need, nor whether the adapted head beats DeepFaune there; only the
real weights on a labelled real season (`deepfaune adapt`'s own cross-validation) say that.

    python benchmarks/bench_adapt.py [--per-species 40] [--budgets 4,8,16,32]
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from imagegen import make_jpeg  # noqa: E402

from deepfaune_plugin.adapt import DEFAULT_STRENGTH, FOLDS, fit_head, fit_per_fold, fold_of  # noqa: E402
from deepfaune_plugin.cli import main  # noqa: E402
from deepfaune_plugin.models.standins import write_standins  # noqa: E402

SPECIES = {"yeti": (255, 0, 0), "ibex2": (200, 0, 60), "kraken": (255, 60, 60), "wolpertinger": (170, 0, 0)}


def scenes(root: Path, per_species: int) -> list[tuple[str, str]]:
    rows, t0, i = [], datetime(2024, 5, 3, 6), 0
    for k in range(per_species):
        for name, colour in SPECIES.items():
            x = 60 + (i * 37) % 300
            path = make_jpeg(root / f"IMG_{i:05d}.JPG", 640, 480, date=t0 + timedelta(hours=i),
                             blobs=[(colour, (x, 90, x + 200, 300))], seed=i)
            rows.append((path.name, name))
            i += 1
    return rows


def quiet(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue()


def accuracy(table: Path, truth: dict[str, str], held: set[str]) -> float:
    with open(table, encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["filename"] in held]
    return sum(r["prediction"] == truth[r["filename"]] for r in rows) / len(rows)


def speed(n: int = 10_000, d: int = 1024, k: int = 38) -> tuple[float, float]:
    """(one fit, an adapt's fits: the head on all labels then 5 folds started from it), seconds, on n crops of
    d features in k classes, sequences of 4 crops."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(k, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    x = (means[y] * 0.3 + rng.normal(size=(n, d))).astype(np.float16).astype(np.float32)
    w0, b0 = (rng.normal(size=(k, d)) * 0.05).astype(np.float32), np.zeros(k, np.float32)
    folds = fold_of((np.arange(n) // 4).tolist(), FOLDS)
    crop_fold = np.array([folds[s] for s in np.arange(n) // 4])
    t = time.perf_counter()
    full = fit_head(x, y, w0, b0)
    one = time.perf_counter() - t
    fit_per_fold(x, y, crop_fold, w0, b0, FOLDS, DEFAULT_STRENGTH, start=full)
    return one, time.perf_counter() - t


def main_bench() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-species", type=int, default=40)
    ap.add_argument("--budgets", default="4,8,16,32")
    ap.add_argument("--speed-only", action="store_true", help="only the fit times for 10,000 labels")
    args = ap.parse_args()
    if args.speed_only:
        print_speed()
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = root / "models"
        write_standins(models, "1.4", seed=0)
        rows = scenes(root / "src", args.per_species)
        truth = dict(rows)
        common = ["--models-dir", str(models), "--store", str(root / "s.sqlite")]
        t = time.perf_counter()
        quiet(["run", str(root / "src"), "-o", str(root / "plain.csv"), "--no-report", "-q", "--lang", "en", *common])
        print(f"{len(rows)} scenes, {len(SPECIES)} species DeepFaune lacks; first run {time.perf_counter() - t:.1f} s")
        print("labels  DeepFaune(held-out)  adapted(held-out)  adapt s  run --adapted s  CV verdict")
        for budget in [int(b) for b in args.budgets.split(",")]:
            labelled = rows[:budget]  # species alternate: balanced
            held = {r for r, _ in rows[budget:]}
            labels = root / f"l{budget}.csv"
            labels.write_text("file,label\n" + "".join(f"{r},{s}\n" for r, s in labelled), encoding="utf-8")
            t = time.perf_counter()
            code, out = quiet(["adapt", str(root / "src"), "--labels", str(labels), "--name", f"b{budget}",
                               *common])
            t_adapt = time.perf_counter() - t
            verdict = next((line for line in out.splitlines() if line.startswith("verdict")), "(no verdict)")
            t = time.perf_counter()
            quiet(["run", str(root / "src"), "-o", str(root / f"a{budget}.csv"), "--no-report", "-q", "--lang", "en",
                   "--adapted", f"b{budget}", *common])
            t_run = time.perf_counter() - t
            print(f"{budget:>6}  {accuracy(root / 'plain.csv', truth, held):>18.1%}  "
                  f"{accuracy(root / f'a{budget}.csv', truth, held):>17.1%}  {t_adapt:>7.1f}  {t_run:>15.1f}  "
                  f"{'helps' if 'better' in verdict else 'does not help'}")
    print_speed()


def print_speed() -> None:
    one, adapt = speed()
    print(f"10,000 labelled crops x 1024 features, 38 classes: one fit {one:.1f} s; an adapt's {FOLDS + 1} fits "
          f"(all labels, then {FOLDS} folds started from it) {adapt:.1f} s")


if __name__ == "__main__":
    main_bench()
