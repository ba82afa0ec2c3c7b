"""`deepfaune sort`: one folder per label, clashes renamed, people blurred on copies only."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from deepfaune_plugin.sorting import SortError, blur_boxes, sort_files, unique_target

NOW = datetime(2025, 6, 1, 14, 5, 9)


def _table(tmp: Path, rows) -> Path:
    cols = ["filename", "prediction", "person_boxes", "failure"]
    path = tmp / "deepfaune.csv"
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)
    return path


def _img(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((300, 400, 3), value, np.uint8)
    arr[:, ::2] = 255  # stripes, so that a blur visibly changes pixels
    Image.fromarray(arr).save(path, quality=95)
    return path


def test_copy_into_label_folders_with_clashes(tmp_path: Path):
    _img(tmp_path / "a" / "IMG_1.JPG")
    _img(tmp_path / "b" / "IMG_1.JPG")
    _img(tmp_path / "b" / "IMG_2.JPG")
    table = _table(tmp_path, [["a/IMG_1.JPG", "renard", "", ""], ["b/IMG_1.JPG", "renard", "", ""],
                              ["b/IMG_2.JPG", "vide", "", ""], ["b/gone.JPG", "", "", "zero-byte file"]])
    report = sort_files(table, dest=tmp_path / "out", mode="copy", now=NOW)
    base = tmp_path / "out" / "deepfaune_01-06-2025_14-05-09"
    assert report.folder == base
    assert sorted(p.relative_to(base).as_posix() for p in base.rglob("*.JPG")) == [
        "renard/IMG_1.JPG", "renard/IMG_1_2.JPG", "vide/IMG_2.JPG"]
    assert report.done == 3 and report.failures == [("b/gone.JPG", "not sorted: zero-byte file")]
    assert (tmp_path / "a" / "IMG_1.JPG").exists()  # copies leave originals


def test_link_and_move(tmp_path: Path):
    src = _img(tmp_path / "IMG_1.JPG")
    table = _table(tmp_path, [["IMG_1.JPG", "cerf", "", ""]])
    report = sort_files(table, dest=tmp_path / "o1", mode="link", now=NOW)
    linked = report.folder / "cerf" / "IMG_1.JPG"
    assert linked.stat().st_ino == src.stat().st_ino
    report = sort_files(table, dest=tmp_path / "o2", mode="move", now=NOW)
    assert (report.folder / "cerf" / "IMG_1.JPG").exists() and not src.exists()


def test_blur_only_person_boxes_on_copies(tmp_path: Path):
    src = _img(tmp_path / "IMG_1.JPG")
    table = _table(tmp_path, [["IMG_1.JPG", "humain", "0.0,0.0,0.5,1.0", ""]])
    report = sort_files(table, dest=tmp_path / "out", mode="copy", blur_humans=True, now=NOW)
    blurred = np.asarray(Image.open(report.folder / "humain" / "IMG_1.JPG")).astype(int)
    original = np.asarray(Image.open(src)).astype(int)
    left, right = slice(0, 190), slice(210, 400)
    assert np.abs(blurred[:, left] - original[:, left]).mean() > 30  # stripes gone in the person box
    assert np.abs(blurred[:, right] - original[:, right]).mean() < 5  # the rest untouched
    with pytest.raises(SortError, match="copies only"):
        sort_files(table, dest=tmp_path / "out", mode="move", blur_humans=True)


def test_blur_boxes_kernel():
    img = np.zeros((400, 400, 3), np.uint8)
    img[185:215, 185:215] = 255  # 30×30 white square: its mass spread over a 151×151 window
    out = blur_boxes(img, [(0.0, 0.0, 1.0, 1.0)])
    assert out[200, 200, 0] == round(255 * 900 / (151 * 151))  # 10
    assert out[200, 200 + 75 + 15, 0] == 0  # beyond half a kernel of the square: untouched by it


def test_unique_target(tmp_path: Path):
    (tmp_path / "x.jpg").write_bytes(b"1")
    (tmp_path / "x_2.jpg").write_bytes(b"2")
    assert unique_target(tmp_path, "x.jpg").name == "x_3.jpg"


def test_not_a_result_table(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SortError, match="missing column"):
        sort_files(bad, dest=tmp_path)
