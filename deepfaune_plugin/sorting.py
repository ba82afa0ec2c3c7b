"""`deepfaune sort`: one folder per label, as DeepFaune's GUI does, from a result table."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from .engine.imageio import MediaError, read_image
from .errors import DeepfauneError
from .placing import place_file, safe_folder_name, unique_target
from .table import read_table

BLUR_KERNEL = 151  # DeepFaune's box filter size for human blurring


class SortError(DeepfauneError):
    pass


@dataclass
class SortReport:
    folder: Path
    done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def blur_boxes(image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Blur each normalised (x, y, w, h) box with a 151×151 box filter."""
    h, w = image.shape[:2]
    out = image.copy()
    for bx, by, bw, bh in boxes:
        x1, y1 = max(0, int(bx * w)), max(0, int(by * h))
        x2, y2 = min(w, int((bx + bw) * w)), min(h, int((by + bh) * h))
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] = cv2.blur(out[y1:y2, x1:x2], (BLUR_KERNEL, BLUR_KERNEL))
    return out


def _parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
    boxes = []
    for part in str(text or "").split(";"):
        if part.strip():
            x, y, w, h = (float(v) for v in part.split(","))
            boxes.append((x, y, w, h))
    return boxes


def _write_blurred(src: Path, dst: Path, boxes) -> None:
    try:
        image = read_image(src)  # as the detector read it (EXIF orientation, size limits, clear reasons)
    except MediaError as err:
        raise OSError(f"cannot blur: {err}") from err
    ok, encoded = cv2.imencode(src.suffix or ".jpg", blur_boxes(image, boxes), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise OSError("cannot encode blurred image")
    encoded.tofile(str(dst))


def sort_files(results: Path, dest: Path, root: Path | None = None, mode: str = "copy",
               blur_humans: bool = False, now: datetime | None = None) -> SortReport:
    results = Path(results)
    if not results.is_file():
        raise SortError(f"{results}: no such result table")
    if blur_humans and mode != "copy":
        raise SortError("--blur-humans applies to copies only (use --mode copy); originals are never modified")
    table = read_table(results)
    missing = {"filename", "prediction"} - set(table.columns)
    if missing:
        raise SortError(f"{results}: not a deepfaune result table (missing column(s) {', '.join(sorted(missing))})")
    root = Path(root) if root else results.parent
    stamp = (now or datetime.now()).strftime("%d-%m-%Y_%H-%M-%S")
    folder = Path(dest) / f"deepfaune_{stamp}"
    report = SortReport(folder=folder)
    for row in table.to_dict("records"):
        rel = str(row["filename"])
        if str(row.get("failure", "") or "") or not str(row["prediction"]):
            report.failures.append((rel, f"not sorted: {row.get('failure') or 'no prediction'}"))
            continue
        src = root / rel
        label_dir = folder / safe_folder_name(str(row["prediction"]))
        try:
            label_dir.mkdir(parents=True, exist_ok=True)
            target = unique_target(label_dir, src.name)
            boxes = _parse_boxes(row.get("person_boxes", "")) if blur_humans else []
            if boxes:
                _write_blurred(src, target, boxes)
            elif mode == "move":
                shutil.move(str(src), str(target))
            else:
                place_file(src, target, link=mode == "link")
            report.done += 1
        except OSError as err:
            report.failures.append((rel, f"{err.strerror or err}"))
    return report
