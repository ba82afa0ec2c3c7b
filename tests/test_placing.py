"""Media put into folders we build: folder names from labels, clashes, hard link or copy."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from deepfaune_plugin import placing
from deepfaune_plugin.placing import place_file, safe_folder_name, unique_target


@pytest.mark.parametrize("label, folder", [
    ("red deer", "red deer"),
    ("chevreuil", "chevreuil"),
    ("écureuil", "écureuil"),
    ("a/b\\c:d", "a_b_c_d"),
    ('<>"|?*', "______"),
    ("tab\there", "tab_here"),
    (" .hidden. ", "hidden"),
    ("...", "_"),
    ("", "_"),
])
def test_safe_folder_name(label, folder):
    assert safe_folder_name(label) == folder


def test_unique_target_numbers_clashes_and_counts_dangling_links(tmp_path: Path):
    assert unique_target(tmp_path, "x.jpg") == tmp_path / "x.jpg"
    (tmp_path / "x.jpg").write_bytes(b"1")
    (tmp_path / "x_2.jpg").symlink_to(tmp_path / "gone.jpg")  # dangling: still taken
    assert unique_target(tmp_path, "x.jpg") == tmp_path / "x_3.jpg"
    assert unique_target(tmp_path, "noext") == tmp_path / "noext"


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src.jpg"
    src.write_bytes(b"pixels")
    os.utime(src, (1_700_000_000, 1_700_000_000))
    return src


def test_place_file_links_by_default(tmp_path: Path):
    src = _source(tmp_path)
    assert place_file(src, tmp_path / "linked.jpg") == "link"
    assert (tmp_path / "linked.jpg").stat().st_ino == src.stat().st_ino


def test_place_file_copies_with_the_dates_when_asked(tmp_path: Path):
    src = _source(tmp_path)
    assert place_file(src, tmp_path / "copy.jpg", link=False) == "copy"
    copy = (tmp_path / "copy.jpg").stat()
    assert copy.st_ino != src.stat().st_ino and copy.st_mtime == 1_700_000_000
    assert (tmp_path / "copy.jpg").read_bytes() == b"pixels"


def test_place_file_copies_when_the_link_fails(tmp_path: Path, monkeypatch):
    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(placing.os, "link", cross_device)
    src = _source(tmp_path)
    assert place_file(src, tmp_path / "other_disk.jpg") == "copy"
    assert (tmp_path / "other_disk.jpg").read_bytes() == b"pixels"

