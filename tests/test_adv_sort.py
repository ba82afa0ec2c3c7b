"""Attacker cases for `deepfaune sort` and `deepfaune sort --undo` (issue 30, items 1 and 2), as data.

A row: id (the issue item first), a builder that plants the attack under a temp folder (`tmp/home` stands in for
the user's home: the real ~/.ssh is never touched) and returns the command line, the exit status expected, a
fragment the one-line refusal must hold, and the paths that must not exist afterwards. Each case also checks that
the whole temp tree is byte-for-byte what it was before the command: nothing moved, nothing written.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from deepfaune_plugin.cli import main

KEY = b"ssh-ed25519 AAAAC3Nza attacker@example\n"


def _img(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((60, 80, 3), value, np.uint8)).save(path, quality=90)
    return path


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _table(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["filename,prediction,person_boxes,failure"] + [f"{name},{label},," for name, label in rows]
    return _write(path, "\n".join(lines) + "\n")


def _record(path: Path, source: Path, table: Path) -> None:
    _write(path, json.dumps({"format": "deepfaune-run/1", "source": str(source),
                             "outputs": [{"path": str(table.resolve())}]}))


def _home(tmp: Path) -> Path:
    home = tmp / "home"
    _write(home / ".ssh" / "id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    _img(home / "Pictures" / "private.jpg", 40)
    return home


def _sorted(tmp: Path, mode: str = "move") -> Path:
    """A genuine sort by the user (tmp/season -> tmp/out): the folder it made."""
    season = tmp / "season"
    _img(season / "st1" / "IMG_1.JPG")
    _img(season / "st1" / "IMG_2.JPG", 150)
    table = _table(season / "deepfaune.csv", [("st1/IMG_1.JPG", "renard"), ("st1/IMG_2.JPG", "cerf")])
    assert main(["sort", str(table), "--dest", str(tmp / "out"), "--mode", mode]) == 0
    (folder,) = (tmp / "out").iterdir()
    return folder


def _edit_mapping(mapping: Path, row: int, **values: str) -> None:
    with open(mapping, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[row].update(values)
    with open(mapping, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------- item 1: --undo trusts its mapping

def forged_mapping(tmp: Path) -> list[str]:
    """A 'sorted folder' anyone can send: its mapping puts the attacker's key at ~/.ssh/authorized_keys."""
    home = _home(tmp)
    folder = tmp / "Downloads" / "deepfaune_01-06-2025_14-05-09"
    _write(folder / "renard" / "IMG_1.JPG", KEY)
    _write(folder / "deepfaune-sort.csv", "source,destination,label,mode,bytes,mtime_ns\n"
                                          f"{home / '.ssh' / 'authorized_keys'},renard/IMG_1.JPG,renard,move,,\n")
    return ["sort", "--undo", str(folder / "deepfaune-sort.csv")]


def edited_mapping(tmp: Path) -> list[str]:
    """The user's own sort, whose mapping someone edited afterwards to aim a row at ~/.ssh."""
    home = _home(tmp)
    folder = _sorted(tmp)
    (folder / "renard" / "st1" / "IMG_1.JPG").write_bytes(KEY)
    _edit_mapping(folder / "deepfaune-sort.csv", 0, source=str(home / ".ssh" / "authorized_keys"))
    return ["sort", "--undo", str(folder / "deepfaune-sort.csv")]


def root_swapped_for_a_link(tmp: Path) -> list[str]:
    """The user's own sort; afterwards a folder of the (shared) root is replaced by a link to ~/.ssh."""
    home = _home(tmp)
    folder = _sorted(tmp)
    (tmp / "season" / "st1").rmdir()  # emptied by the move
    os.symlink(home / ".ssh", tmp / "season" / "st1")
    return ["sort", "--undo", str(folder)]


def mapping_copied_elsewhere(tmp: Path) -> list[str]:
    """A genuine mapping copied into another folder, with other files under its destinations' names."""
    _home(tmp)
    folder = _sorted(tmp)
    other = tmp / "Downloads" / folder.name
    _write(other / "renard" / "st1" / "IMG_1.JPG", KEY)
    _write(other / "deepfaune-sort.csv", (folder / "deepfaune-sort.csv").read_bytes())
    return ["sort", "--undo", str(other)]


# ---------------------------------------------------------------- item 2: the root a table's record names

def record_names_ssh(tmp: Path) -> list[str]:
    """A received table and a run record beside it whose source is ~/.ssh: the row names id_rsa."""
    home = _home(tmp)
    table = _table(tmp / "Downloads" / "deepfaune.csv", [("id_rsa", "renard")])
    _record(tmp / "Downloads" / "deepfaune-run.json", home / ".ssh", table)
    return ["sort", str(table), "--dest", str(tmp / "out"), "--mode", "move"]


def record_under_another_name(tmp: Path) -> list[str]:
    """A record beside the table, but not under the name a run gives the record of that table."""
    home = _home(tmp)
    table = _table(tmp / "Downloads" / "season.csv", [("private.jpg", "renard")])
    _record(tmp / "Downloads" / "notes.json", home / "Pictures", table)
    return ["sort", str(table), "--dest", str(tmp / "out"), "--mode", "move"]


def record_beside_a_link_to_the_table(tmp: Path) -> list[str]:
    """The table is a link; the record sits beside the link, not beside the table it describes."""
    home = _home(tmp)
    real = _table(tmp / "elsewhere" / "deepfaune.csv", [("private.jpg", "renard")])
    (tmp / "Downloads").mkdir()
    os.symlink(real, tmp / "Downloads" / "deepfaune.csv")
    _record(tmp / "Downloads" / "deepfaune-run.json", home / "Pictures", real)
    return ["sort", str(tmp / "Downloads" / "deepfaune.csv"), "--dest", str(tmp / "out"), "--mode", "move"]


def record_of_another_table(tmp: Path) -> list[str]:
    """The record beside the table, under its name, describes another table: not used, and said."""
    home = _home(tmp)
    table = _table(tmp / "Downloads" / "deepfaune.csv", [("private.jpg", "renard")])
    _record(tmp / "Downloads" / "deepfaune-run.json", home / "Pictures", tmp / "Downloads" / "other.csv")
    return ["sort", str(table), "--dest", str(tmp / "out"), "--mode", "move"]


def media_name_linking_to_text(tmp: Path) -> list[str]:
    """A row named like a photo that is a link to a text file beside it."""
    _home(tmp)
    _write(tmp / "Downloads" / "notes.txt", "not a photo")
    os.symlink("notes.txt", tmp / "Downloads" / "photo.JPG")
    table = _table(tmp / "Downloads" / "deepfaune.csv", [("photo.JPG", "renard")])
    return ["sort", str(table), "--dest", str(tmp / "out")]


def ssh_as_root(*extra: str) -> Callable[[Path], list[str]]:
    """Even with --root given, a row naming a non-media file is refused (every mode and layout)."""
    def build(tmp: Path) -> list[str]:
        home = _home(tmp)
        table = _table(tmp / "Downloads" / "deepfaune.csv", [("id_rsa", "renard")])
        return ["sort", str(table), "--root", str(home / ".ssh"), "--dest", str(tmp / "out"), *extra]
    return build


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], list[str]]
    code: int
    message: str
    absent: tuple[str, ...] = ("home/.ssh/authorized_keys", "out")


NOT_MEDIA = "row 2: id_rsa is not a photo or video (no suffix); only media files are sorted"
CASES = [
    Case("30.1 forged mapping writes ~/.ssh/authorized_keys", forged_mapping, 1,
         "no sort of yours wrote this mapping"),
    Case("30.1 the user's mapping edited afterwards", edited_mapping, 1, "no sort of yours wrote this mapping",
         ("home/.ssh/authorized_keys",)),
    Case("30.1 a root folder swapped for a link to ~/.ssh", root_swapped_for_a_link, 1,
         "row 2: source st1/IMG_1.JPG leads outside", ("home/.ssh/IMG_1.JPG", "home/.ssh/IMG_2.JPG")),
    Case("30.1 a genuine mapping copied to another folder", mapping_copied_elsewhere, 1,
         "was written in ", ("season/st1/IMG_1.JPG",)),
    Case("30.2 run record beside the table names ~/.ssh", record_names_ssh, 1, NOT_MEDIA),
    Case("30.2 record under another name is not used", record_under_another_name, 1,
         "1 of 1 files it names are not under"),
    Case("30.2 record beside a link to the table is not used", record_beside_a_link_to_the_table, 1,
         "1 of 1 files it names are not under"),
    Case("30.2 the record beside the table describes another table", record_of_another_table, 1,
         "deepfaune-run.json does not list "),
    Case("30.2 a .JPG name linking to a text file", media_name_linking_to_text, 1,
         "row 2: photo.JPG leads to notes.txt, not a photo or video"),
    Case("30.2 --root ~/.ssh copy", ssh_as_root(), 1, NOT_MEDIA),
    Case("30.2 --root ~/.ssh move --flat", ssh_as_root("--mode", "move", "--flat"), 1, NOT_MEDIA),
    Case("30.2 --root ~/.ssh link", ssh_as_root("--mode", "link"), 1, NOT_MEDIA),
    Case("30.2 --root ~/.ssh --blur-humans", ssh_as_root("--blur-humans"), 1, NOT_MEDIA),
]


def _snapshot(tmp: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in tmp.rglob("*"):
        rel = p.relative_to(tmp).as_posix()
        out[rel] = (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir")
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_adversarial_sort(case: Case, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    argv = case.build(tmp_path)
    capsys.readouterr()
    before = _snapshot(tmp_path)
    assert main(argv) == case.code
    err = capsys.readouterr().err
    assert case.message in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err  # one line
    for rel in case.absent:
        assert not os.path.lexists(tmp_path / rel), f"{rel} was written"
    assert _snapshot(tmp_path) == before  # nothing moved, nothing written


# ---------------------------------------------------------------- item 1: the checks behind the record

def _forged_but_recorded(tmp: Path, rows: list[str]) -> Path:
    """A mapping recorded as the user's own (as if the per-user record were planted too): every row must still
    be one the sort could have written."""
    from deepfaune_plugin.sorting import MAPPING_NAME, record_mapping

    folder = tmp / "out" / "deepfaune_01-06-2025_14-05-09"
    _img(folder / "renard" / "IMG_1.JPG")
    _img(folder / "renard" / "IMG_2.JPG", 150)
    mapping = _write(folder / MAPPING_NAME, "source,destination,label,mode,bytes,mtime_ns\n" + "\n".join(rows) + "\n")
    record_mapping(mapping, root=tmp / "season", folders=[folder])
    return mapping


@pytest.mark.parametrize("rows, message", [
    (["{home}/.ssh/authorized_keys,renard/IMG_1.JPG,renard,move,,"],
     "row 2: source {home}/.ssh/authorized_keys is not inside {season}, the root the sort recorded"),
    (["{season}/a.jpg,renard/IMG_1.JPG,renard,move,,", "{season}/b.jpg,renard/IMG_1.JPG,renard,move,,"],
     "row 3: destination renard/IMG_1.JPG is also row 2's"),
    (["{season}/a.jpg,renard/IMG_1.JPG,renard,move,,", "{season}/a.jpg,renard/IMG_2.JPG,renard,move,,"],
     "row 3: source {season}/a.jpg is also row 2's"),
    (["{season}/notes.txt,renard/IMG_1.JPG,renard,move,,"],
     "row 2: source {season}/notes.txt is not a photo or video"),
    (["{season}/a.jpg,deepfaune-sort.csv,renard,move,,"],
     "row 2: destination deepfaune-sort.csv is not a photo or video"),
    (["{season}/st1/a.jpg,renard/IMG_1.JPG,renard,move,,", "{season}/a.jpg,renard/IMG_2.JPG,renard,move,,"],
     "row 2: source st1/a.jpg leads outside"),
])
def test_item30_1_every_row_is_checked_before_anything_moves(rows, message, tmp_path: Path, monkeypatch, capsys):
    home = _home(tmp_path)
    season = tmp_path / "season"
    season.mkdir()
    os.symlink(home / ".ssh", season / "st1")
    monkeypatch.setenv("HOME", str(home))
    mapping = _forged_but_recorded(tmp_path, [r.format(home=home, season=season) for r in rows])
    before = _snapshot(tmp_path)
    assert main(["sort", "--undo", str(mapping)]) == 1
    err = capsys.readouterr().err
    assert f"{mapping}: " in err and message.format(home=home, season=season) in err, err
    assert "nothing undone" in err and err.count("\n") == 1
    assert _snapshot(tmp_path) == before
