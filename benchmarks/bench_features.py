"""What keeping the classifier's features (issue 34) adds to the result store, per image and per 100,000 images.

    python benchmarks/bench_features.py [IMAGES] [ANIMAL_SHARE]

Saves IMAGES results shaped like a season's (DeepFaune 1.4: 38 logits, 8 bird logits, one or two boxes; a share
ANIMAL_SHARE of them classified, default 0.6) through `ResultStore.save` into two stores, one with the 1024
features of each classified crop and one without (`--no-features`), and reports each file's size once SQLite's
WAL is checkpointed, the save time, and the time `read_features` takes to read them all back. Figures in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deepfaune_plugin.store import ResultStore, read_features, store_files
from deepfaune_plugin.types import ANIMAL, Detection, MediaItem, RawResult

WIDTH = 1024  # DeepFaune's ViT-L class token
BATCH = 64  # STORE_BATCH in inference.py


def results(folder: Path, count: int, animals: float, rng: np.random.Generator):
    """(item, raw) pairs of distinct small files; the store hashes each file, as a run does."""
    for i in range(count):
        path = folder / f"IMG_{i:06d}.JPG"
        path.write_bytes(i.to_bytes(8, "little") * 4)
        item = MediaItem(path=path, relpath=f"ST{i % 50:02d}/{path.name}", group=f"ST{i % 50:02d}")
        raw = RawResult(relpath=item.relpath, width=4000, height=3000)
        if rng.random() < animals:
            raw.detections = [Detection((1200.5, 800.25, 2100.75, 1500.0), 0.93, ANIMAL, "DF")]
            if rng.random() < 0.3:
                raw.detections.append(Detection((100.0, 200.0, 400.0, 500.0), 0.71, ANIMAL, "DF"))
            raw.selected = 0
            raw.logits = rng.normal(0, 3, 38).astype(np.float32)
            raw.bird_logits = rng.normal(0, 2, 8).astype(np.float32)
            raw.features = rng.normal(0, 1, WIDTH).astype(np.float32)  # after LayerNorm: about N(0, 1)
        yield item, raw


def fill(path: Path, pairs: list, features: bool) -> tuple[int, float]:
    store = ResultStore(path)
    start = time.perf_counter()
    for first in range(0, len(pairs), BATCH):
        store.save("f" * 64, pairs[first:first + BATCH], features=features)
    seconds = time.perf_counter() - start
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return sum(p.stat().st_size for p in store_files(path)), seconds


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    animals = float(sys.argv[2]) if len(sys.argv) > 2 else 0.6
    work = Path(tempfile.mkdtemp())
    (work / "files").mkdir()
    pairs = list(results(work / "files", count, animals, np.random.default_rng(0)))
    crops = sum(raw.features is not None for _, raw in pairs)
    without, t_without = fill(work / "without.sqlite", pairs, features=False)
    with_, t_with = fill(work / "with.sqlite", pairs, features=True)
    added = with_ - without
    print(f"{count} images, {crops} classified crops ({crops / count:.0%}), features {WIDTH} x float16")
    print(f"store without features: {without / count:.0f} B per image, {without / count * 1e5 / 2**20:.0f} MiB "
          f"per 100,000 images; save {t_without / count * 1e6:.0f} us per image")
    print(f"store with features:    {with_ / count:.0f} B per image, {with_ / count * 1e5 / 2**20:.0f} MiB "
          f"per 100,000 images; save {t_with / count * 1e6:.0f} us per image")
    start = time.perf_counter()
    got = read_features(work / "with.sqlite", "f" * 64)
    read = time.perf_counter() - start
    assert got.values.shape == (crops, WIDTH)
    print(f"read_features: all {crops} crops in {read:.2f} s ({read / crops * 1e6:.0f} us per crop)")
    print(f"added: {added / crops:.0f} B per classified crop (raw {2 * WIDTH} B), {added / count:.0f} B per image, "
          f"{added / count * 1e5 / 2**20:.0f} MiB per 100,000 images")


if __name__ == "__main__":
    main()
