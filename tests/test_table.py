"""DeepFaune's result table: columns, order, formats, and the XLSX/CSV writers."""
from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from deepfaune_plugin.api import RunResults, RunSettings
from deepfaune_plugin.table import DEEPFAUNE_COLUMNS, EXTRA_COLUMNS, read_table, result_table, write_table
from deepfaune_plugin.types import ANIMAL, PERSON, ClassTable, Decision, Detection, RawResult
from deepfaune_plugin.xlsx import read_xlsx

CLASSES = ClassTable(version="t", names={"en": ["fox"]}, bird_names=None,
                     non_animal={k: {"en": k} for k in ("human", "vehicle", "empty", "undefined")})


def _results() -> RunResults:
    raw = RawResult(relpath="site A/IMG_0001.JPG", width=4000, height=3000, selected=0, date_source="exif",
                    detections=[Detection((1000.0, 750.0, 2000.0, 1500.0), 0.8765, ANIMAL),
                                Detection((0.0, 0.0, 400.0, 1500.0), 0.7, PERSON)])
    failed = RawResult(relpath="site A/broken.jpg", failure="zero-byte file")
    decisions = [
        Decision("site A/IMG_0001.JPG", datetime(2021, 4, 11, 8, 25, 38), 1, "fox", 0.97, "fox", 0.95, "fox",
                 1, 1, ANIMAL, "fox", "fox", box=raw.detections[0].box, box_conf=0.8765),
        Decision("site A/broken.jpg", None, 2, "", 0.0, "", 0.0, "", 0, 0, 0, "", "", failure="zero-byte file"),
    ]
    return RunResults(settings=RunSettings(), classes=CLASSES, raw={r.relpath: r for r in (raw, failed)},
                      decisions=decisions)


def test_columns_order_and_values():
    table = result_table(_results())
    assert list(table.columns) == [
        "filename", "date", "seqnum", "predictionbase", "scorebase", "prediction", "score", "top1", "count",
        "humancount", "bbox_x", "bbox_y", "bbox_width", "bbox_height", "bbox_conf", "detector", "person_boxes",
        "failure", "warning", "date_source", "reviewed",
    ]
    assert list(table.columns) == DEEPFAUNE_COLUMNS + EXTRA_COLUMNS
    first = table.iloc[0]
    assert first["date"] == "2021:04:11 08:25:38"
    assert (first["bbox_x"], first["bbox_y"], first["bbox_width"], first["bbox_height"]) == (0.25, 0.25, 0.25, 0.25)
    assert first["bbox_conf"] == 0.8765 and first["detector"] == "DF"
    assert first["person_boxes"] == "0.000000,0.000000,0.100000,0.500000"
    second = table.iloc[1]
    assert second["failure"] == "zero-byte file" and second["prediction"] == "" and second["date"] == ""
    assert (first["date_source"], second["date_source"]) == ("exif", "")


@pytest.mark.parametrize("name", ["out.csv", "out.xlsx"])
def test_write_and_read_back(tmp_path: Path, name: str):
    table = result_table(_results())
    path = write_table(table, tmp_path / name)
    back = read_table(path)
    assert list(back.columns) == list(table.columns)
    assert back.loc[0, "filename"] == "site A/IMG_0001.JPG"
    assert float(back.loc[0, "score"]) == 0.95 and int(back.loc[0, "seqnum"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_xlsx_opens_in_openpyxl(tmp_path: Path):
    openpyxl = pytest.importorskip("openpyxl")
    path = write_table(result_table(_results()), tmp_path / "t.xlsx")
    sheet = openpyxl.load_workbook(path).active
    assert [c.value for c in sheet[1]][:3] == ["filename", "date", "seqnum"]
    assert sheet["A2"].value == "site A/IMG_0001.JPG" and sheet["C2"].value == 1 and sheet["G2"].value == 0.95
    assert zipfile.is_zipfile(path)


def test_unknown_extension_is_refused_and_old_file_kept(tmp_path: Path):
    with pytest.raises(ValueError, match="unsupported output type '.json'"):
        write_table(result_table(_results()), tmp_path / "out.json")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name, says", [("out.json", "unsupported output type '.json'; use .csv or .xlsx"),
                                        ("out", "the name has no file type; use .csv or .xlsx"),
                                        ("folder", "is a folder; --output names the result file")])
def test_issue31_1_the_folder_hosts_writer_refuses_a_non_table_with_a_host_error(tmp_path: Path, name, says):
    """`Host.open_writer` promises a HostError for an output the host cannot write (docs/plugins.md); the
    folder host's writer is DeepFaune's TableWriter. Still a ValueError for callers that caught that."""
    from deepfaune_plugin.api import HostError, TableWriter

    (tmp_path / "folder").mkdir()
    with pytest.raises(HostError, match=says) as refused:
        TableWriter(tmp_path / name)
    assert isinstance(refused.value, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_failed_write_keeps_previous_output(tmp_path: Path, monkeypatch):
    target = tmp_path / "out.csv"
    target.write_text("previous results\n")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pandas.DataFrame.to_csv", boom)
    with pytest.raises(OSError):
        write_table(result_table(_results()), target)
    assert target.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_xlsx_roundtrip_of_unicode_and_control_characters(tmp_path: Path):
    import pandas as pd

    table = pd.DataFrame({"a": ["Gämse é/ü", "x\x01y"], "b": [1.5, None]})
    from deepfaune_plugin.xlsx import write_xlsx

    write_xlsx(table, tmp_path / "u.xlsx")
    back = read_xlsx(tmp_path / "u.xlsx")
    assert back["a"].tolist() == ["Gämse é/ü", "xy"]
    assert back["b"].tolist() == [1.5, ""]


def test_outputs_get_the_usual_permissions_not_mkstemps(tmp_path: Path):
    """Atomic writes go through mkstemp (0600); the result must be as readable as any new file."""
    import os
    import stat

    from deepfaune_plugin.atomic import NEW_FILE_MODE
    from deepfaune_plugin.hooks.camtrapdp.write import swap_in

    mask = os.umask(0)
    os.umask(mask)
    assert NEW_FILE_MODE == 0o666 & ~mask
    path = write_table(result_table(_results()), tmp_path / "out.csv")
    (tmp_path / "pkg").mkdir()
    swap_in(tmp_path / "pkg" / ".deepfaune-commit.json", [(tmp_path / "pkg" / "observations.csv", b"a\n")])
    for written in (path, tmp_path / "pkg" / "observations.csv"):
        assert stat.S_IMODE(written.stat().st_mode) == NEW_FILE_MODE


def test_xlsx_dates_are_date_cells_and_read_back_as_deepfaunes_text(tmp_path: Path):
    """Excel, LibreOffice and readxl see `date` as dates (a text cell hid them); sort and resume read it back
    as the table's own EXIF text. A date a 1900-system sheet cannot hold, or no date, stays text."""
    import openpyxl
    import pandas as pd

    from deepfaune_plugin.xlsx import write_xlsx

    table = pd.DataFrame({"filename": ["a.jpg", "b.jpg", "c.jpg", "=HYPERLINK(\"http://x\")"],
                          "date": ["2025:06:01 13:05:09", "1899:01:01 00:00:00", "", "2024:02:29 23:59:59"],
                          "score": [0.91, 0.5, None, 1.0]})
    write_xlsx(table, tmp_path / "d.xlsx", sheet="deepfaune")
    sheet = openpyxl.load_workbook(tmp_path / "d.xlsx").active
    from datetime import datetime

    assert sheet["B2"].value == datetime(2025, 6, 1, 13, 5, 9) and sheet["B2"].is_date
    assert sheet["B2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet["B3"].value == "1899:01:01 00:00:00" and sheet["B4"].value is None
    assert sheet["A5"].data_type == "s" and sheet["A5"].value == "=HYPERLINK(\"http://x\")"
    back = read_xlsx(tmp_path / "d.xlsx")
    assert back["date"].tolist() == ["2025:06:01 13:05:09", "1899:01:01 00:00:00", "", "2024:02:29 23:59:59"]
    assert back["score"].tolist() == [0.91, 0.5, "", 1.0]
