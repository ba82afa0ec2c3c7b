"""Issue 30 item 19: the station tree read exactly as camtrapR's recordTable() reads it, checked against its
source (list.dirs(inDir) lists hidden station folders; exiftool -r -ext jpg on each, hidden sub-folders not
entered; runExiftool() drops names starting with "." or "_"; Directory is exiftool's, from inDir as given)."""
from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deepfaune_plugin.cli import main
from deepfaune_plugin.hooks.camtrapr.host import CamtrapRHost
from deepfaune_plugin.plugins import Registered
from fakes import registry_with_fake
from imagegen import make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)


def jpeg(path: Path, seconds: float) -> Path:
    return make_jpeg(path, width=64, height=48, date=T0 + timedelta(seconds=seconds))


@pytest.fixture
def registry():
    reg = registry_with_fake()
    reg.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    return reg


def cli(registry, *argv: str) -> int:
    return main(["run", *argv, "--backend", "fake", "-q", "--no-store", "--no-report"], registry=registry)


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_hidden_station_folder_is_a_station(tmp_path: Path, registry):
    """list.dirs() lists ".hidden" and recordTable() reads it as a station; a hidden folder below a station is not
    entered (exiftool -r), and our own .deepfaune* folders are never read."""
    root = tmp_path / "inDir"
    jpeg(root / ".StationH" / "fox_1.jpg", 0)
    jpeg(root / ".StationH" / ".thumbs" / "fox_9.jpg", 60)
    jpeg(root / ".deepfaune_cache" / "fox_8.jpg", 60)
    jpeg(root / "StationA" / "fox_2.jpg", 120)
    out = tmp_path / "rt.csv"
    assert cli(registry, str(root), "--host", "camtrapr", "--output", str(out)) == 0
    assert [(r["Station"], r["FileName"]) for r in rows_of(out)] == [(".StationH", "fox_1.jpg"),
                                                                     ("StationA", "fox_2.jpg")]


def test_directory_is_indir_as_given(tmp_path: Path, registry, monkeypatch):
    """recordTable(inDir = "survey/img") writes Directory "survey/img/StationA" (relative to R's working folder),
    and "./StationA" for inDir = "."; never an absolute path the user did not give."""
    jpeg(tmp_path / "survey" / "img" / "StationA" / "Cam1" / "fox_1.jpg", 0)
    jpeg(tmp_path / "survey" / "img" / "StationB" / "fox_2.jpg", 60)
    monkeypatch.chdir(tmp_path)
    assert cli(registry, "survey/img", "--host", "camtrapr", "--output", "rt.csv") == 0
    assert [(r["Directory"], r["FileName"]) for r in rows_of(tmp_path / "rt.csv")] == [
        ("survey/img/StationA/Cam1", "fox_1.jpg"), ("survey/img/StationB", "fox_2.jpg")]
    monkeypatch.chdir(tmp_path / "survey" / "img")
    assert cli(registry, ".", "--host", "camtrapr", "--output", str(tmp_path / "rt2.csv")) == 0
    assert [r["Directory"] for r in rows_of(tmp_path / "rt2.csv")] == ["./StationA/Cam1", "./StationB"]
    # and the table written so is read back as a source, from the folder it was written in
    assert cli(registry, str(tmp_path / "rt2.csv"), "--output", str(tmp_path / "rt3.csv")) == 0
    assert [r["FileName"] for r in rows_of(tmp_path / "rt3.csv")] == ["fox_1.jpg", "fox_2.jpg"]


def test_left_out_names_counted_and_not_an_incomplete_run(tmp_path: Path, registry, capsys):
    """Names starting with "." are counted with those starting with "_" (before: only "_"); what camtrapR's own
    rule leaves out (.png, .jpeg, ._ files) is not the source's media: exit 0, summary "0 skipped"."""
    root = tmp_path / "inDir"
    jpeg(root / "StationA" / "fox_1.jpg", 0)
    jpeg(root / "StationA" / "fox_2.jpeg", 60)
    jpeg(root / "StationA" / "fox_3.png", 120)
    jpeg(root / "StationA" / "_fox_4.jpg", 180)
    jpeg(root / "StationA" / "._fox_5.jpg", 240)
    jpeg(root / "StationA" / "Cam1" / ".fox_6.JPG", 300)
    jpeg(root / "StationA" / ".thumbs" / ".fox_7.jpg", 360)  # in a folder exiftool does not enter: not counted
    out = tmp_path / "rt.csv"
    assert main(["run", str(root), "--host", "camtrapr", "--output", str(out), "--backend", "fake", "--no-store",
                 "--no-report"], registry=registry) == 0
    err = capsys.readouterr().err
    assert "3 file(s) whose name starts with '.' or '_' left out" in err
    assert "2 file(s) of other formats left out" in err
    assert "1 files, 1 sequences, 0 failed, 0 skipped" in err
    assert [r["FileName"] for r in rows_of(out)] == ["fox_1.jpg"]


def test_utf16_record_table_says_save_as_utf8(tmp_path: Path, registry, capsys):
    """A record table saved as Excel's "Unicode text" (UTF-16) is recognised and refused saying what to do
    (before: read as cp1252, "missing column(s) ... (columns found: 'ÿþ\\x00S...')")."""
    jpeg(tmp_path / "StationA" / "fox_1.jpg", 0)
    table = tmp_path / "rt.csv"
    table.write_bytes(f'"","Station","Directory","FileName"\r\n"1","StationA","{tmp_path / "StationA"}",'
                      f'"fox_1.jpg"\r\n'.encode("utf-16"))
    assert main(["run", str(table), "--backend", "fake", "--no-store", "--no-report"], registry=registry) == 1
    assert f"{table}: UTF-16 text; save it as UTF-8; nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "deepfaune_recordTable.csv").exists()
