"""The folder host's `NAME-animals.csv` (`--every-animal`): one row per animal box, beside DeepFaune's table.

Columns: the file and its sequence; the box in original pixels (x1, y1, x2, y2, 2 decimals) and normalised
(bbox_x, bbox_y, bbox_width, bbox_height: fractions, top-left origin, as the result table's); the detector's
confidence and name; the box's own label, score and top1 (DeepFaune's rules for that box alone, "too small" where
its crop is too small to classify); `deepfaune_box` (1 for the box DeepFaune's own columns describe); and for the
box's label in its sequence, `seq_maxn` (the most boxes of it in one image) and `seq_images` (images holding it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from .atomic import StagedFile
from .contracts import STANDIN_COLUMN, STANDIN_VALUE
from .table import csv_safe
from .types import AnimalDecision

ANIMAL_COLUMNS = [
    "filename", "seqnum", "x1", "y1", "x2", "y2", "bbox_x", "bbox_y", "bbox_width", "bbox_height", "bbox_conf",
    "detector", "label", "score", "top1", "deepfaune_box", "seq_maxn", "seq_images",
]


def animals_path(output: Path) -> Path:
    """NAME-animals.csv beside the result table NAME.csv (or NAME.xlsx)."""
    output = Path(output)
    return output.with_name(f"{output.stem}-animals.csv")


def animal_table(animals: Sequence[AnimalDecision], standin: bool = False) -> pd.DataFrame:
    """The rows; a stand-in run's (`standin`, RunResults.standin) end with STANDIN_COLUMN, as its result table."""
    rows = [{
        "filename": a.relpath, "seqnum": a.seqnum,
        **dict(zip(("x1", "y1", "x2", "y2"), (round(float(v), 2) for v in a.box))),
        **dict(zip(("bbox_x", "bbox_y", "bbox_width", "bbox_height"), a.normalised)),
        "bbox_conf": round(a.conf, 4), "detector": a.source,
        "label": a.label, "score": a.score, "top1": a.top1,
        "deepfaune_box": int(a.selected), "seq_maxn": a.maxn, "seq_images": a.images,
        **({STANDIN_COLUMN: STANDIN_VALUE} if standin else {}),
    } for a in animals]
    return pd.DataFrame(rows, columns=ANIMAL_COLUMNS + ([STANDIN_COLUMN] if standin else []))


class AnimalTableWriter:
    """The per-animal CSV written block by block as a run goes; it replaces a previous one only on `close`."""

    def __init__(self, path: Path):
        self.target = Path(path)
        self.staged: StagedFile | None = StagedFile(self.target)
        self.out = self.staged.open_text()
        self.rows = 0

    def add(self, animals: Sequence[AnimalDecision], standin: bool = False) -> None:
        if animals:
            csv_safe(animal_table(animals, standin)).to_csv(self.out, header=self.rows == 0, index=False)
            self.rows += len(animals)

    def close(self, standin: bool = False) -> list[Path]:
        if self.rows == 0:  # the header alone: a run without any animal box
            animal_table([], standin).to_csv(self.out, index=False)
        self.out.close()
        staged, self.staged = self.staged, None
        assert staged is not None, "closed twice"
        return [staged.commit()]

    def abort(self) -> None:
        if self.staged is not None:
            self.out.close()
            self.staged.discard()
            self.staged = None
