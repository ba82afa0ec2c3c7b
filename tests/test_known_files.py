"""Issue 33 item 7: the result store remembers each file's content key with its status (size, mtime, ctime,
inode, device), so opening an unchanged season again reads no file, and any change (even an in-place edit that
restores size and mtime) reads it again and is said."""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from deepfaune_plugin import known_files
from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.store import ResultStore, clear_results
from deepfaune_plugin.testing import StoredLogitsBackend, registry_with
from deepfaune_plugin.types import MediaItem, RawResult
from imagegen import make_jpeg


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The files read for their content, by name; files changed just now are remembered too (RACY_NS 0)."""
    seen: list[str] = []
    real = known_files.hash_file

    def spy(path):
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(known_files, "hash_file", spy)
    monkeypatch.setattr(known_files, "RACY_NS", 0)
    return seen


def _stored(tmp_path: Path, names=("a.jpg", "b.jpg", "c.jpg")) -> tuple[ResultStore, list[MediaItem]]:
    items = [MediaItem(make_jpeg(tmp_path / "season" / name, seed=i), name, "") for i, name in enumerate(names)]
    store = ResultStore(tmp_path / "s.sqlite")
    store.save("fp", [(item, RawResult(item.relpath, 8, 6)) for item in items])
    return store, items


def _edit_in_place(path: Path) -> None:
    """Other bytes, same size, mtime set back: what a tool that writes in place and keeps the date does."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    with open(path, "r+b") as fh:  # the same inode
        fh.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_a_second_lookup_reads_no_file(tmp_path: Path, reads):
    store, items = _stored(tmp_path)
    assert sorted(reads) == ["a.jpg", "b.jpg", "c.jpg"]  # the save: each file read once
    reads.clear()
    assert set(store.lookup("fp", items)) == {"a.jpg", "b.jpg", "c.jpg"}
    store.close()
    again = ResultStore(tmp_path / "s.sqlite")  # another process, later: remembered in the store's file
    assert set(again.lookup("fp", items)) == {"a.jpg", "b.jpg", "c.jpg"}
    assert reads == [] and again.known.read == 0 and again.take_edited() == []


def test_an_in_place_edit_with_mtime_restored_is_seen_by_ctime(tmp_path: Path, reads):
    store, items = _stored(tmp_path)
    time.sleep(0.05)  # a later tick of the file system's clock: the edit's ctime differs
    _edit_in_place(items[1].path)
    reads.clear()
    found = store.lookup("fp", items)
    assert set(found) == {"a.jpg", "c.jpg"}  # b's bytes are new: its result is computed again
    assert reads == ["b.jpg"]
    assert store.take_edited() == ["b.jpg"] and store.take_edited() == []  # said once


def test_a_file_replaced_by_another_of_the_same_size_and_mtime_is_read(tmp_path: Path, reads):
    store, items = _stored(tmp_path)
    target = items[0].path
    before = target.stat()
    other = tmp_path / "other.jpg"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF
    other.write_bytes(data)
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, target)  # a new inode under the old name, same size and mtime
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    reads.clear()
    assert set(store.lookup("fp", items)) == {"b.jpg", "c.jpg"}
    assert reads == ["a.jpg"]
    assert store.take_edited() == ["a.jpg"]


def test_a_touched_file_is_read_again_but_not_said_edited(tmp_path: Path, reads):
    store, items = _stored(tmp_path)
    os.utime(items[2].path, ns=(1, 1))
    reads.clear()
    assert set(store.lookup("fp", items)) == {"a.jpg", "b.jpg", "c.jpg"}
    assert reads == ["c.jpg"] and store.take_edited() == []
    reads.clear()
    store.lookup("fp", items)
    assert reads == []  # its new status is remembered


def test_a_moved_season_is_read_there_once_and_finds_its_results(tmp_path: Path, reads):
    store, items = _stored(tmp_path)
    (tmp_path / "season").rename(tmp_path / "moved")
    moved = [MediaItem(tmp_path / "moved" / i.relpath, i.relpath, "") for i in items]
    reads.clear()
    assert set(store.lookup("fp", moved)) == {"a.jpg", "b.jpg", "c.jpg"}  # by content
    assert sorted(reads) == ["a.jpg", "b.jpg", "c.jpg"] and store.take_edited() == []
    reads.clear()
    store.lookup("fp", moved)
    assert reads == []


def test_another_store_reads_the_files_itself(tmp_path: Path, reads):
    _, items = _stored(tmp_path)
    reads.clear()
    other = ResultStore(tmp_path / "other.sqlite")
    assert other.lookup("fp", items) == {}
    assert sorted(reads) == ["a.jpg", "b.jpg", "c.jpg"]


def test_a_file_changed_just_before_it_was_read_is_not_remembered(tmp_path: Path, reads, monkeypatch):
    monkeypatch.setattr(known_files, "RACY_NS", 60 * 10**9)  # every file here changed within the last minute
    store, items = _stored(tmp_path)
    reads.clear()
    store.lookup("fp", items)
    # a second change in the same clock tick would leave every time as it was: such files are read each time
    assert sorted(reads) == ["a.jpg", "b.jpg", "c.jpg"]


def test_a_store_from_before_the_table_keeps_everything_and_gains_it(tmp_path: Path, reads):
    store, items = _stored(tmp_path)
    store.set_human([(items[0], "fox")], "Ana")
    store.close()
    db = sqlite3.connect(tmp_path / "s.sqlite")
    db.execute("DROP TABLE known_files")  # as the previous version left it
    db.commit()
    db.close()
    reads.clear()
    old = ResultStore(tmp_path / "s.sqlite")
    assert set(old.lookup("fp", items)) == {"a.jpg", "b.jpg", "c.jpg"}
    assert old.human_labels(items)["a.jpg"].key == "fox"
    assert len(reads) == 3
    reads.clear()
    old.lookup("fp", items)
    assert reads == []


def test_clear_keeps_only_what_labelled_files_need(tmp_path: Path, reads):
    store, items = _stored(tmp_path)
    store.set_human([(items[0], "fox")], "Ana")
    clear_results(store)
    paths = [Path(p).name for (p,) in store.db.execute("SELECT path FROM known_files")]
    assert paths == ["a.jpg"]
    assert store.human_labels(items)["a.jpg"].key == "fox"


def _season(root: Path, n: int) -> Path:
    for i in range(n):
        make_jpeg(root / f"cam{i % 2}" / f"IMG_{i:04d}.JPG", 64, 48, seed=i)
    return root


def test_run_again_reads_no_file_and_says_an_edit(tmp_path: Path, reads):
    src = _season(tmp_path / "season", 4)
    registry = registry_with(backends=[StoredLogitsBackend(default=[0.0] * 5 + [3.0] + [0.0] * 32)])
    settings = RunSettings(backend="logits", lang="en")

    def go() -> list[str]:
        said: list[str] = []
        run(src, settings, registry=registry, store=tmp_path / "s.sqlite", progress=False, report=False,
            log=said.append)
        return said

    go()
    assert len(reads) == 4
    reads.clear()
    said = go()
    assert reads == [] and "4 of 4 files already computed" in " ".join(said)
    time.sleep(0.05)
    _edit_in_place(src / "cam1" / "IMG_0003.JPG")
    said = go()
    assert reads == ["IMG_0003.JPG"]
    assert ("1 file(s) were edited since the result store last read them (other bytes at the same path), "
            "e.g. cam1/IMG_0003.JPG: their results are looked up by their new content (computed again if it is "
            "new)") in said
    assert "3 of 4 files already computed" in " ".join(said)
