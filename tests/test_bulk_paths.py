"""Issue 33 item 7 (speed): opening a season of 100,000 files again stats each file once, makes each absolute path
from its folder's once, and builds its objects with the cyclic collector paused; none of it may change a key, a
refusal or a listing."""
from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from deepfaune_plugin import walk
from deepfaune_plugin.bulk import kept_for_the_block, without_gc
from deepfaune_plugin.known_files import path_key, path_keys
from deepfaune_plugin.types import MediaItem


def test_path_keys_are_path_key_of_each_item(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    odd = os.fsdecode(b"chamois\xe9.jpg")  # a Latin-1 name: its bytes kept as surrogates
    paths = [tmp_path / "a" / "x.jpg", Path("a/x.jpg"), Path("x.jpg"), Path("a/../b/./y.jpg"), Path("/r.jpg"),
             tmp_path / "a" / odd, Path(os.fsdecode(b"d\xe9/z.jpg")), Path("a/.."), Path(".."),
             Path(str(tmp_path) + "//a//x.jpg"), tmp_path / "a" / "x y\tz.JPG"]
    items = [MediaItem(p, str(i), ".") for i, p in enumerate(paths)]
    keys = path_keys(items)
    assert keys == [path_key(item) for item in items]
    assert keys[0] == keys[1] == str(tmp_path / "a" / "x.jpg")
    assert keys[3] == str(tmp_path / "b" / "y.jpg")
    assert keys[5] == "bytes:" + os.fsencode(str(tmp_path / "a" / odd)).hex()
    assert keys[7] == str(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symbolic links")
def test_walk_stats_only_what_its_listing_did_not_type(tmp_path, monkeypatch):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"y")
    os.mkfifo(tmp_path / "c.jpg")
    (tmp_path / "d.jpg").symlink_to(tmp_path / "a.jpg")
    (tmp_path / "e.jpg").symlink_to(tmp_path / "gone.jpg")
    asked: list[str] = []
    real = walk.not_regular

    def spy(path):
        asked.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(walk, "not_regular", spy)
    problems: list = []
    listed = [rel for block in walk.iter_media_blocks(tmp_path, problems=problems) for _, rel in block]
    assert listed == ["a.jpg", "b.jpg", "d.jpg"]
    assert sorted(asked) == ["c.jpg", "d.jpg", "e.jpg"]  # the regular files are not stat-ed again
    assert [(p.relpath, p.reason) for p in problems] == [
        ("c.jpg", "not a regular file (a FIFO (named pipe)); skipped"),
        ("e.jpg", "broken symbolic link (its target does not exist); skipped")]


def test_without_gc_pauses_and_restores():
    assert gc.isenabled()
    with without_gc():
        assert not gc.isenabled()
        with without_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block leaves the outer's pause
    assert gc.isenabled()

    @without_gc()
    def fails():
        assert not gc.isenabled()
        raise ValueError("stop")

    with pytest.raises(ValueError):
        fails()
    assert gc.isenabled()
    gc.disable()
    try:
        with without_gc():
            pass
        assert not gc.isenabled()  # someone else's choice stays
    finally:
        gc.enable()


def test_kept_for_the_block_sets_the_living_aside_then_hands_them_back():
    before = gc.get_freeze_count()
    alive = [[i] for i in range(1000)]
    with kept_for_the_block():
        assert gc.get_freeze_count() >= before + len(alive)
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()
