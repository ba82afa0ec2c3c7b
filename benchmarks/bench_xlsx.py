"""Peak memory and time of writing a 100,000-row result table as XLSX, streamed block by block as a run does.

    python benchmarks/bench_xlsx.py [ROWS] [OUT.xlsx]

Run it in a fresh process (it reports the process's peak RSS). Figures in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from deepfaune_plugin.xlsx import XlsxTable


def block(first: int, size: int, rng: np.random.Generator) -> pd.DataFrame:
    """A thousand rows shaped like a season's table (21 columns, dates, boxes, labels)."""
    rows = range(first, first + size)
    return pd.DataFrame({
        "filename": [f"ST{i % 50:02d}/IMG_{i:06d}.JPG" for i in rows],
        "date": [f"2025:06:{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{i % 60:02d}" for i in rows],
        "seqnum": np.arange(first, first + size) // 3 + 1, "predictionbase": ["renard"] * size,
        "scorebase": rng.random(size).round(2), "prediction": ["renard"] * size, "score": rng.random(size).round(2),
        "top1": ["renard"] * size, "count": rng.integers(0, 3, size), "humancount": np.zeros(size, int),
        "bbox_x": rng.random(size).round(6), "bbox_y": rng.random(size).round(6),
        "bbox_width": rng.random(size).round(6), "bbox_height": rng.random(size).round(6),
        "bbox_conf": rng.random(size).round(4), "detector": ["DF"] * size, "person_boxes": [""] * size,
        "failure": [""] * size, "warning": [""] * size, "date_source": ["exif"] * size, "reviewed": [""] * size})


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp()) / "bench.xlsx"
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    sheet = XlsxTable(out, sheet="deepfaune")
    for first in range(0, rows, 1000):
        sheet.add(block(first, min(1000, rows - first), rng))
    sheet.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{rows} rows: {time.perf_counter() - start:.1f} s, {out.stat().st_size / 1e6:.1f} MB, "
          f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
