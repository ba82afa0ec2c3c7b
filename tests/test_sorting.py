"""`deepfaune sort`: one folder per label, clashes renamed, people blurred on copies only."""
from __future__ import annotations

import csv
import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from deepfaune_plugin.cli import main
from deepfaune_plugin.sorting import SortError, blur_boxes, sort_files, unique_target

NOW = datetime(2025, 6, 1, 14, 5, 9)


def _table(tmp: Path, rows, name: str = "deepfaune.csv") -> Path:
    cols = ["filename", "prediction", "person_boxes", "failure"]
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
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
    report = sort_files(table, dest=tmp_path / "out", mode="copy", now=NOW, flat=True)
    base = tmp_path / "out" / "deepfaune_01-06-2025_14-05-09"
    assert report.folder == base
    assert sorted(p.relative_to(base).as_posix() for p in base.rglob("*.JPG")) == [
        "renard/IMG_1.JPG", "renard/IMG_1_2.JPG", "vide/IMG_2.JPG"]  # --flat: DeepFaune's own layout
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


# ---------------------------------------------------------------- issue 15 (safety) and 16 (a real season)

def _sort(capsys, *args) -> tuple[int, str, str]:
    rc = main(["sort", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_item15_1_rows_outside_the_root_are_refused_before_anything_moves(tmp_path: Path, capsys):
    root = tmp_path / "season"
    _img(root / "st1" / "IMG_1.JPG")
    secret = tmp_path / "private" / "notes.txt"
    secret.parent.mkdir()
    secret.write_text("mine")
    os.symlink(secret, root / "st1" / "link.JPG")  # inside the root by name, outside once resolved
    table = _table(tmp_path, [["st1/IMG_1.JPG", "renard", "", ""], ["../private/notes.txt", "renard", "", ""],
                              [str(secret), "cerf", "", ""], ["st1/link.JPG", "cerf", "", ""]])
    rc, _, err = _sort(capsys, table, "--root", root, "--dest", tmp_path / "out", "--mode", "move")
    assert rc == 1
    assert "3 row(s) refused, nothing was sorted" in err
    assert "'../private/notes.txt' refused: climbs out" in err and "an absolute path" in err
    assert "'st1/link.JPG' refused: leads outside" in err
    assert secret.read_text() == "mine" and (root / "st1" / "IMG_1.JPG").is_file()  # the good row did not move
    assert _tree(tmp_path / "out") == []


def test_item15_13_a_fifo_in_the_table_is_refused(tmp_path: Path, capsys):
    root = tmp_path / "season"
    _img(root / "IMG_1.JPG")
    os.mkfifo(root / "x.jpg")
    table = _table(root, [["IMG_1.JPG", "renard", "", ""], ["x.jpg", "renard", "", ""]])
    rc, _, err = _sort(capsys, table, "--dest", tmp_path / "out")
    assert rc == 1 and "x.jpg is not a regular file (a FIFO (named pipe))" in err
    assert _tree(tmp_path / "out") == []


@pytest.mark.parametrize("boxes", ["0.1,0.2", "a,b,c,d", "0,0,nan,1", "0,0,0.5"])
def test_item15_15_blur_with_malformed_person_boxes_does_nothing(tmp_path: Path, capsys, boxes: str):
    root = tmp_path / "season"
    _img(root / "IMG_1.JPG")
    _img(root / "IMG_2.JPG")
    table = _table(root, [["IMG_1.JPG", "humain", "0,0,0.5,1", ""], ["IMG_2.JPG", "humain", boxes, ""]])
    rc, _, err = _sort(capsys, table, "--dest", tmp_path / "out", "--blur-humans")
    assert rc == 1 and "Traceback" not in err
    assert "row 3 (IMG_2.JPG): person_boxes" in err and boxes in err and "nothing was sorted" in err
    assert _tree(tmp_path / "out") == []  # not even IMG_1's blurred copy


def _mapping(folder: Path) -> list[dict]:
    with open(folder / "deepfaune-sort.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_item16_5_sub_folders_kept_mapping_written_and_undo_moves_back(tmp_path: Path, capsys):
    root = tmp_path / "season"
    for rel in ("st1/cam1/IMG_1.JPG", "st1/cam2/IMG_1.JPG", "st2/IMG_7.JPG"):
        _img(root / rel)
    before = {rel: (root / rel).read_bytes() for rel in ("st1/cam1/IMG_1.JPG", "st1/cam2/IMG_1.JPG", "st2/IMG_7.JPG")}
    table = _table(root, [["st1/cam1/IMG_1.JPG", "renard", "", ""], ["st1/cam2/IMG_1.JPG", "renard", "", ""],
                          ["st2/IMG_7.JPG", "chamois", "", ""], ["st2/gone.JPG", "", "", "zero-byte file"]])
    rc, out, err = _sort(capsys, table, "--dest", tmp_path / "out", "--mode", "move")
    assert rc == 1 and "st2/gone.JPG: not sorted: zero-byte file" in err  # the run's own failure, said
    (folder,) = (tmp_path / "out").iterdir()
    assert _tree(folder) == ["chamois", "chamois/st2", "chamois/st2/IMG_7.JPG", "deepfaune-sort.csv", "renard",
                             "renard/st1", "renard/st1/cam1", "renard/st1/cam1/IMG_1.JPG", "renard/st1/cam2",
                             "renard/st1/cam2/IMG_1.JPG"]
    assert f"3 files sorted into {folder}" in out and f"deepfaune sort --undo {folder / 'deepfaune-sort.csv'}" in out
    rows = _mapping(folder)
    assert [(r["source"], r["destination"], r["mode"]) for r in rows] == [
        (str(root / "st1/cam1/IMG_1.JPG"), "renard/st1/cam1/IMG_1.JPG", "move"),
        (str(root / "st1/cam2/IMG_1.JPG"), "renard/st1/cam2/IMG_1.JPG", "move"),
        (str(root / "st2/IMG_7.JPG"), "chamois/st2/IMG_7.JPG", "move")]
    assert not (root / "st2" / "IMG_7.JPG").exists()

    rc, out, _ = _sort(capsys, "--undo", folder / "deepfaune-sort.csv")
    assert rc == 0 and "3 files moved back, 0 copies or links removed" in out
    assert {rel: (root / rel).read_bytes() for rel in before} == before
    assert not folder.exists()  # emptied, and the mapping of a completed undo removed


def test_item16_5_undo_of_copies_keeps_what_a_person_changed(tmp_path: Path, capsys):
    root = tmp_path / "season"
    _img(root / "a" / "IMG_1.JPG")
    _img(root / "a" / "IMG_2.JPG")
    table = _table(root, [["a/IMG_1.JPG", "renard", "", ""], ["a/IMG_2.JPG", "cerf", "", ""]])
    rc, _, _ = _sort(capsys, table, "--dest", tmp_path / "out")
    assert rc == 0
    (folder,) = (tmp_path / "out").iterdir()
    edited = folder / "cerf" / "a" / "IMG_2.JPG"
    edited.write_bytes(edited.read_bytes() + b"note")  # a person edits one copy
    rc, out, err = _sort(capsys, "--undo", folder)
    assert rc == 1 and "0 files moved back, 1 copies or links removed; 1 kept" in out
    assert "cerf/a/IMG_2.JPG: changed since the sort; kept" in err
    assert _tree(folder) == ["cerf", "cerf/a", "cerf/a/IMG_2.JPG", "deepfaune-sort.csv"]
    assert (root / "a" / "IMG_1.JPG").is_file() and (root / "a" / "IMG_2.JPG").is_file()  # originals untouched


def test_item16_5_files_not_found_refused_once_then_found_through_the_run_record(tmp_path: Path, capsys):
    source = tmp_path / "season"
    names = [f"st{k % 3}/IMG_{k}.JPG" for k in range(12)]
    for rel in names:
        _img(source / rel)
    table = _table(tmp_path / "results", [[rel, "renard", "", ""] for rel in names], name="season.csv")
    rc, _, err = _sort(capsys, table, "--dest", tmp_path / "out")
    assert rc == 1
    assert err.count("\n") == 1 and "12 of 12 files it names are not under" in err and "--root" in err
    assert "No such file" not in err
    assert _tree(tmp_path / "out") == []  # no empty dated folder

    rc, out, _ = _sort(capsys, table, "--root", source, "--dest", tmp_path / "out")
    assert rc == 0 and "12 files sorted" in out and f"root: {source} (given with --root)" in out
    record = {"format": "deepfaune-run/1", "source": str(source), "outputs": [{"path": str(table.resolve())}]}
    (table.parent / "deepfaune-run.json").write_text(json.dumps(record))
    rc, out, _ = _sort(capsys, table, "--dest", tmp_path / "out2")
    assert rc == 0 and "12 files sorted" in out  # the record says where the table's names are relative to
    assert f"root: {source} (the source of the run record {table.parent / 'deepfaune-run.json'}, which lists " \
           "this table as its output)" in out

    (source / names[0]).unlink()
    rc, _, err = _sort(capsys, table, "--root", source, "--dest", tmp_path / "out3")
    assert rc == 1 and f"1 of 12 files it names are not under {source} (first: {names[0]})" in err
    rc, out, err = _sort(capsys, table, "--root", source, "--dest", tmp_path / "out3", "--skip-missing")
    assert rc == 1 and "11 files sorted" in out and f"{names[0]}: not found under {source}; not sorted" in err


def test_item15_15_an_error_half_way_puts_moved_files_back(tmp_path: Path, capsys, monkeypatch):
    import shutil

    root = tmp_path / "season"
    names = ["a/IMG_1.JPG", "a/IMG_2.JPG", "b/IMG_3.JPG"]
    for rel in names:
        _img(root / rel)
    table = _table(root, [[rel, "renard", "", ""] for rel in names])
    real_move, calls = shutil.move, []

    def failing_move(src, dst):
        calls.append(src)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_move(src, dst)

    monkeypatch.setattr(shutil, "move", failing_move)
    rc, _, err = _sort(capsys, table, "--dest", tmp_path / "out", "--mode", "move")
    assert rc == 1 and "No space left on device" in err and "the 2 file(s) moved so far were put back" in err
    assert all((root / rel).is_file() for rel in names)
    assert _tree(tmp_path / "out") == []  # neither the sorted folder nor its hidden work folder


def test_item16_5_a_move_killed_half_way_is_undone_from_its_journal(tmp_path: Path, capsys, monkeypatch):
    import shutil

    root = tmp_path / "season"
    names = ["a/IMG_1.JPG", "a/IMG_2.JPG", "b/IMG_3.JPG"]
    for rel in names:
        _img(root / rel)
    table = _table(root, [[rel, "renard", "", ""] for rel in names])
    real_move, calls = shutil.move, []

    def killed(src, dst):  # the process dies during the third move: nothing after it runs
        calls.append(src)
        if len(calls) == 3:
            raise SystemExit(137)
        return real_move(src, dst)

    monkeypatch.setattr(shutil, "move", killed)
    with pytest.raises(SystemExit):
        sort_files(table, dest=tmp_path / "out", mode="move", now=NOW)
    monkeypatch.setattr(shutil, "move", real_move)
    (work,) = (tmp_path / "out").iterdir()
    assert work.name.startswith(".deepfaune_01-06-2025_14-05-09.") and not (root / "a" / "IMG_1.JPG").exists()
    rc, out, _ = _sort(capsys, "--undo", work / "deepfaune-sort.csv")
    assert rc == 0 and "2 files moved back, 0 copies or links removed, 1 already undone" in out
    assert all((root / rel).is_file() for rel in names) and not work.exists()


@pytest.mark.parametrize("name, data", [("bad.csv", b'filename,prediction\n"a,b\n'), ("bad.xlsx", b"PK\x03\x04 no zip")])
def test_item15_15_a_damaged_table_is_a_message(tmp_path: Path, capsys, name: str, data: bytes):
    (tmp_path / name).write_bytes(data)
    rc, _, err = _sort(capsys, tmp_path / name, "--dest", tmp_path / "out")
    assert rc == 1 and f"{name}: cannot read it as a result table" in err and "Traceback" not in err


def test_item30_1_files_a_failed_move_cannot_put_back_stay_with_their_journal(tmp_path: Path, capsys, monkeypatch):
    """A move fails half way and one file cannot go back: it stays in the hidden folder (never deleted with it),
    and the recorded journal there undoes the rest later."""
    import shutil

    root = tmp_path / "season"
    names = ["a/IMG_1.JPG", "a/IMG_2.JPG", "b/IMG_3.JPG"]
    for rel in names:
        _img(root / rel)
    before = {rel: (root / rel).read_bytes() for rel in names}
    table = _table(root, [[rel, "renard", "", ""] for rel in names])
    real_move, calls = shutil.move, []

    def failing_move(src, dst):
        calls.append(src)
        if len(calls) in (3, 4):  # the third move (disk full), then putting back the second one
            raise OSError(28, "No space left on device")
        return real_move(src, dst)

    monkeypatch.setattr(shutil, "move", failing_move)
    rc, _, err = _sort(capsys, table, "--dest", tmp_path / "out", "--mode", "move")
    monkeypatch.setattr(shutil, "move", real_move)
    assert rc == 1 and "could not put back" in err and "a/IMG_2.JPG" in err and "nothing was sorted" in err
    (work,) = (tmp_path / "out").iterdir()
    assert (work / "renard" / "a" / "IMG_2.JPG").read_bytes() == before["a/IMG_2.JPG"]  # kept, not deleted
    assert f"undo with deepfaune sort --undo {work / 'deepfaune-sort.csv'}" in err
    rc, out, _ = _sort(capsys, "--undo", work)
    assert rc == 0 and "1 files moved back" in out and "2 already undone" in out
    assert {rel: (root / rel).read_bytes() for rel in names} == before and not work.exists()
