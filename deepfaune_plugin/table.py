"""DeepFaune's own result table (the GUI's CSV/XLSX export), plus our traceability columns."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .api import RunResults
from .atomic import atomic_output
from .exifdate import EXIF_DATE_FORMAT
from .types import PERSON
from .xlsx import write_xlsx

#: DeepFaune 1.4.1's columns, in its order.
DEEPFAUNE_COLUMNS = [
    "filename", "date", "seqnum", "predictionbase", "scorebase",
    "prediction", "score", "top1", "count", "humancount",
]
#: Ours, after DeepFaune's: the box DeepFaune kept (normalised x, y, w, h, top-left origin, as MegaDetector
#: and Camtrap DP write them), its confidence and detector, the person boxes (for blurring), failures, and
#: warnings about a file that was still used (e.g. a truncated JPEG decoded as far as it goes), "; "-joined.
EXTRA_COLUMNS = [
    "bbox_x", "bbox_y", "bbox_width", "bbox_height", "bbox_conf", "detector", "person_boxes", "failure", "warning",
]
DATE_FORMAT = EXIF_DATE_FORMAT  # EXIF's own format, which DeepFaune writes back unchanged


def _norm_box(box, width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return (round(x1 / width, 6), round(y1 / height, 6), round((x2 - x1) / width, 6), round((y2 - y1) / height, 6))


def result_table(results: RunResults) -> pd.DataFrame:
    rows = []
    for d in results.decisions:
        raw = results.raw.get(d.relpath)
        row = {
            "filename": d.relpath,
            "date": d.date.strftime(DATE_FORMAT) if d.date else "",
            "seqnum": d.seqnum,
            "predictionbase": d.predictionbase,
            "scorebase": d.scorebase,
            "prediction": d.prediction,
            "score": d.score,
            "top1": d.top1,
            "count": d.count,
            "humancount": d.humancount,
            "bbox_x": None, "bbox_y": None, "bbox_width": None, "bbox_height": None,
            "bbox_conf": None, "detector": "", "person_boxes": "",
            "failure": d.failure or "",
            "warning": "; ".join(raw.warnings) if raw is not None else "",
        }
        if raw is not None and raw.width and raw.height:
            sel = raw.selected_detection
            if sel is not None:
                x, y, w, h = _norm_box(sel.box, raw.width, raw.height)
                row.update(bbox_x=x, bbox_y=y, bbox_width=w, bbox_height=h,
                           bbox_conf=round(sel.conf, 4), detector=sel.source)
            people = [_norm_box(det.box, raw.width, raw.height) for det in raw.detections if det.category == PERSON]
            row["person_boxes"] = ";".join(",".join(f"{v:.6f}" for v in b) for b in people)
        rows.append(row)
    return pd.DataFrame(rows, columns=DEEPFAUNE_COLUMNS + EXTRA_COLUMNS)


def write_table(table: pd.DataFrame, path: Path) -> Path:
    """Write CSV, or XLSX when the path says so; atomically, so a crash leaves the previous file intact."""
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_output(path) as tmp:
        if suffix == ".xlsx":
            write_xlsx(table, tmp, sheet="deepfaune")
        elif suffix in (".csv", ".txt", ""):
            table.to_csv(tmp, index=False, encoding="utf-8")
        else:
            raise ValueError(f"{path}: unsupported output type {suffix!r}; use .csv or .xlsx")
    return path


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        from .xlsx import read_xlsx

        return read_xlsx(path)
    return pd.read_csv(path, keep_default_na=False, dtype={"filename": str, "person_boxes": str, "failure": str,
                                                            "warning": str})
