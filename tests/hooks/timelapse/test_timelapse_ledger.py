"""The ledger beside a .ddb (what DeepFaune wrote there) and the read-only .ddb connection."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from deepfaune_plugin.hooks.timelapse.ddb import TimelapseError, reading
from deepfaune_plugin.hooks.timelapse.ledger import DETECTIONS, LEDGER_NAME, read_ledger, write_ledger


def test_sections_written_by_id_order_and_read_back(tmp_path: Path):
    ddb = tmp_path / "TimelapseData.ddb"
    assert read_ledger(ddb, "Notes") == {}  # no ledger yet
    assert write_ledger(ddb, "Notes", {10: "élan", 2: "renard"}) == tmp_path / LEDGER_NAME
    write_ledger(ddb, DETECTIONS, {3: {"mode": "DF", "rows": "ab12"}})
    assert (tmp_path / LEDGER_NAME).read_bytes().decode("utf-8") == (
        '{\n "TimelapseData.ddb": {\n  "Notes": {\n   "2": "renard",\n   "10": "élan"\n  },\n'
        '  "#detections": {\n   "3": {\n    "mode": "DF",\n    "rows": "ab12"\n   }\n  }\n }\n}')
    assert read_ledger(ddb, "Notes") == {2: "renard", 10: "élan"}
    assert read_ledger(ddb, DETECTIONS) == {3: {"mode": "DF", "rows": "ab12"}}
    assert read_ledger(ddb, "Species") == {}


def test_a_section_is_replaced_and_everything_else_kept(tmp_path: Path):
    ddb = tmp_path / "TimelapseData.ddb"
    write_ledger(tmp_path / "Other.ddb", "Notes", {1: "loup"})
    write_ledger(ddb, "Notes", {1: "renard", 2: "blaireau"})
    write_ledger(ddb, "Species", {4: "fox"})
    write_ledger(ddb, "Notes", {2: "chamois"})  # replaced, not merged; its place in the file stays
    data = json.loads((tmp_path / LEDGER_NAME).read_text(encoding="utf-8"))
    assert data == {"Other.ddb": {"Notes": {"1": "loup"}},
                    "TimelapseData.ddb": {"Notes": {"2": "chamois"}, "Species": {"4": "fox"}}}
    assert list(data["TimelapseData.ddb"]) == ["Notes", "Species"]
    write_ledger(ddb, "Notes", {})
    assert read_ledger(ddb, "Notes") == {} and read_ledger(ddb, "Species") == {4: "fox"}


@pytest.mark.parametrize("content", [b"not json {", b"[1, 2]", b'{"TimelapseData.ddb": [1]}',
                                     b'{"TimelapseData.ddb": {"Notes": "renard"}}', b"\xff not UTF-8"])
def test_an_unreadable_ledger_counts_as_empty_and_is_replaced(tmp_path: Path, content: bytes):
    ddb = tmp_path / "TimelapseData.ddb"
    (tmp_path / LEDGER_NAME).write_bytes(content)
    assert read_ledger(ddb, "Notes") == {}
    write_ledger(ddb, "Notes", {7: "renard"})
    assert read_ledger(ddb, "Notes") == {7: "renard"}


def test_keys_that_are_not_row_ids_are_left_out(tmp_path: Path):
    ddb = tmp_path / "TimelapseData.ddb"
    (tmp_path / LEDGER_NAME).write_text(json.dumps({"TimelapseData.ddb": {"Notes": {
        "3": "renard", "x": "loup", "-1": "lynx", "²": "ours", "": "cerf", "12": None}}}), encoding="utf-8")
    assert read_ledger(ddb, "Notes") == {3: "renard", 12: None}


def test_reading_turns_sqlite_errors_into_timelapse_errors(tmp_path: Path):
    ddb = tmp_path / "TimelapseData.ddb"
    sqlite3.connect(ddb).close()
    with reading(ddb, 0.5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")  # closed on leaving
    with pytest.raises(TimelapseError, match=r"TimelapseData\.ddb: cannot read its recognitions "
                                             r"\(no such table: Detections\)$"):
        with reading(ddb, 0.5, "cannot read its recognitions") as conn:
            conn.execute("SELECT * FROM Detections")
    with pytest.raises(TimelapseError, match=r"TimelapseData\.ddb: the database stayed locked for 0\.5 s "
                                             r"\(database is locked\); is Timelapse saving to it\?"):
        with reading(ddb, 0.5):
            raise sqlite3.OperationalError("database is locked")
    with pytest.raises(TimelapseError, match=r"absent\.ddb: cannot open \(unable to open database file\)$"):
        with reading(tmp_path / "absent.ddb", 0.5):
            pass
