"""Issue 15 item 4: `--species-folders` re-runs never delete a person's change to the tree.

The fake backend labels by name (fox → renard/fox, reddeer → cerf/red deer, person → humain/human);
the tree fixture is camtrapR's: StationA with fox_1..3, person_1, empty_1; StationB/Cam1 with reddeer_1, 2.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import shutil
from pathlib import Path

import pytest

from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.hooks.camtrapr import host as camtrapr_host
from deepfaune_plugin.hooks.camtrapr import species as camtrapr_species
from deepfaune_plugin.hooks.camtrapr.species import LEGACY_MARKER, MANIFEST
from killpoints import FORK_ONLY, fork_run
from test_camtrapr_host import go, jpeg, registry, tree, write_r_csv  # noqa: F401 (fixtures)


POSIX_LINKS = pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")


def listing(root: Path) -> list[str]:
    """Every file, link and empty folder (with a trailing /), the manifest left out."""
    return sorted(p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in root.rglob("*")
                  if p.name != MANIFEST and (not p.is_dir() or p.is_symlink() or not any(p.iterdir())))


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.fixture
def out(tree: Path, registry, tmp_path: Path) -> Path:  # noqa: F811
    out = tmp_path / "species"
    go(tree, registry, species_folders=str(out))
    assert listing(out) == ["StationA/renard/fox_1.jpg", "StationA/renard/fox_2.jpg", "StationA/renard/fox_3.jpg",
                            "StationB/Cam1/cerf/reddeer_1.jpg", "StationB/Cam1/cerf/reddeer_2.jpg"]
    return out


def SAY(msg: str) -> None:  # the run's log on stderr: the host's notes go through it
    print(msg, file=sys.stderr)


def test_item15_4_moved_file_is_kept_as_a_correction(tree: Path, registry, out: Path, capsys):  # noqa: F811
    (out / "StationA" / "chat").mkdir()
    os.replace(out / "StationA/renard/fox_2.jpg", out / "StationA/chat/fox_2.jpg")  # "that one is a cat"
    go(tree, registry, log=SAY, lang="en", species_folders=str(out))
    expected = ["StationA/chat/fox_2.jpg", "StationA/fox/fox_1.jpg", "StationA/fox/fox_3.jpg",
                "StationB/Cam1/red deer/reddeer_1.jpg", "StationB/Cam1/red deer/reddeer_2.jpg"]
    assert listing(out) == expected  # fox_2 is not placed again by its prediction
    assert os.path.samefile(out / "StationA/chat/fox_2.jpg", tree / "StationA/fox_2.jpg")
    assert "1 file(s) you moved kept where you put them" in capsys.readouterr().err
    go(tree, registry, log=SAY, lang="en", species_folders=str(out))  # remembered: later runs keep it too
    assert listing(out) == expected
    entry = next(f for f in json.loads((out / MANIFEST).read_text())["files"] if f["path"].endswith("fox_2.jpg"))
    assert entry["corrected"] is True and entry["source"] == str(tree / "StationA/fox_2.jpg")
    assert leftovers(out) == []


def test_item15_4_notes_and_folders_added_are_kept(tree: Path, registry, out: Path):  # noqa: F811
    (out / "StationA/renard/notes.txt").write_text("fox_3: two foxes?", encoding="utf-8")
    (out / "to check").mkdir()
    os.symlink("StationA", out / "link to A")
    go(tree, registry, lang="en", species_folders=str(out))
    assert (out / "StationA/renard/notes.txt").read_text(encoding="utf-8") == "fox_3: two foxes?"
    assert (out / "to check").is_dir() and os.readlink(out / "link to A") == "StationA"
    assert "StationA/fox/fox_3.jpg" in listing(out) and not (out / "StationA/renard/fox_1.jpg").exists()
    assert leftovers(out) == []


def test_item15_4_removed_file_stays_out(tree: Path, registry, out: Path):  # noqa: F811
    (out / "StationB/Cam1/cerf/reddeer_2.jpg").unlink()  # "not a deer at all"
    for _ in range(2):
        go(tree, registry, lang="en", species_folders=str(out))
        assert listing(out) == ["StationA/fox/fox_1.jpg", "StationA/fox/fox_2.jpg", "StationA/fox/fox_3.jpg",
                                "StationB/Cam1/red deer/reddeer_1.jpg"]
    assert (tree / "StationB/Cam1/reddeer_2.jpg").is_file()  # the original is never touched


def test_item15_4_replaced_file_is_kept_as_the_users(tree: Path, registry, out: Path):  # noqa: F811
    mine = out / "StationA/renard/.fox_1.jpg.edit"
    mine.write_bytes(b"my cropped fox")
    os.replace(mine, out / "StationA/renard/fox_1.jpg")  # what an image editor does when it saves
    original = (tree / "StationA/fox_1.jpg").read_bytes()
    go(tree, registry, lang="en", species_folders=str(out))
    assert (out / "StationA/renard/fox_1.jpg").read_bytes() == b"my cropped fox"
    assert "StationA/fox/fox_1.jpg" not in listing(out)
    assert (tree / "StationA/fox_1.jpg").read_bytes() == original


def test_item15_4_empty_marker_never_licenses_wiping(tree: Path, registry, tmp_path: Path):  # noqa: F811
    mine = tmp_path / "mine"
    (mine / "StationA" / "renard").mkdir(parents=True)
    (mine / "StationA/renard/my_fox.jpg").write_bytes(b"mine")
    (mine / LEGACY_MARKER).write_text("")
    before = snapshot(mine)
    with pytest.raises(DeepfauneError, match="marker of an older deepfaune but no .deepfaune_species_folders.json"):
        go(tree, registry, species_folders=str(mine))
    assert snapshot(mine) == before and not (tree / "deepfaune_recordTable.csv").exists()
    for bad in ("", "{}", "[1, 2]", '{"deepfaune_species_folders": 1, "files": 3}'):
        (mine / MANIFEST).write_text(bad)
        before = snapshot(mine)
        with pytest.raises(DeepfauneError, match=f"{MANIFEST} cannot be read"):
            go(tree, registry, species_folders=str(mine))
        assert snapshot(mine) == before


def test_item15_4_a_fifo_in_the_tree_stops_the_rebuild(tree: Path, registry, out: Path):  # noqa: F811
    os.mkfifo(out / "StationA/pipe.jpg")
    before = listing(out)
    with pytest.raises(DeepfauneError, match="StationA/pipe.jpg is not a file, link or folder"):
        go(tree, registry, lang="en", species_folders=str(out))
    assert listing(out) == before and leftovers(out) == []


@POSIX_LINKS
def test_a_link_of_yours_where_a_station_goes_stops_the_rebuild(tree: Path, registry, out: Path,  # noqa: F811
                                                               tmp_path: Path):
    """A link a person made is theirs and stays, but the rebuild never places files through it: a link at a
    station's (or camera's, species') folder would put them outside the tree, into whatever it points at."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(out / "StationB")
    os.symlink(elsewhere, out / "StationB")
    jpeg(tree / "StationB" / "Cam1" / "reddeer_3.jpg", 86400 + 300)  # new since: placed under StationB
    before = listing(out)
    with pytest.raises(DeepfauneError, match="StationB is a link of yours where StationB/Cam1/cerf/reddeer_3.jpg "
                                             "would be placed"):
        go(tree, registry, species_folders=str(out))
    assert listing(out) == before and leftovers(out) == [] and list(elsewhere.iterdir()) == []


def test_item15_4_a_rebuild_killed_between_its_renames_is_undone(tree: Path, registry, out: Path,  # noqa: F811
                                                                 capsys):
    (out / "StationA/renard/notes.txt").write_text("keep")
    aside = out.parent / f".{out.name}.k1ll3d.old"
    os.replace(out, aside)  # what a kill between "old aside" and "new in place" leaves
    (out.parent / f".{out.name}.h4lf.part" / "StationA").mkdir(parents=True)  # and a half-built tree
    go(tree, registry, log=SAY, lang="en", species_folders=str(out))
    assert "an interrupted rebuild was undone" in capsys.readouterr().err
    assert (out / "StationA/renard/notes.txt").read_text() == "keep"
    assert "StationA/fox/fox_1.jpg" in listing(out) and leftovers(out) == []


def test_item15_4_a_change_made_during_the_rebuild_is_kept_aside(tree: Path, registry, out: Path,  # noqa: F811
                                                                 monkeypatch, capsys):
    real_fill = camtrapr_species._fill

    def fill_while_someone_writes(work, old, plan, images):
        real_fill(work, old, plan, images)
        (old / "late note.txt").write_text("written during the run")

    monkeypatch.setattr(camtrapr_species, "_fill", fill_while_someone_writes)
    go(tree, registry, log=SAY, lang="en", species_folders=str(out))
    (kept,) = [out.parent / name for name in leftovers(out)]
    assert (kept / "late note.txt").read_text() == "written during the run"
    assert f"the previous one is kept as {kept}" in capsys.readouterr().err


def snapshot_links(root: Path) -> dict[str, object]:
    """Every file's bytes, link's target and folder of a tree (the manifest included)."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "/"
    return out


def _kill_loop(tree: Path, registry, out: Path) -> tuple[int, int, int]:  # noqa: F811
    (out / "StationA" / "chat").mkdir()
    os.replace(out / "StationA/renard/fox_2.jpg", out / "StationA/chat/fox_2.jpg")
    (out / "StationA/renard/notes.txt").write_text("fox_3: two foxes?")
    pristine = out.parent / "pristine"
    shutil.copytree(out, pristine, symlinks=True)
    old = snapshot_links(pristine)

    def rebuild():
        go(tree, registry, lang="en", species_folders=str(out))

    killed, total = fork_run(rebuild, camtrapr_host, "build_species_tree", None)
    assert not killed
    new = snapshot_links(out)
    assert new != old and new["StationA/chat/fox_2.jpg"] == old["StationA/chat/fox_2.jpg"]
    assert new["StationA/renard/notes.txt"] == b"fox_3: two foxes?"
    seen = {"old": 0, "new": 0}
    for kill_at in range(1, total + 1):
        shutil.rmtree(out)
        shutil.copytree(pristine, out, symlinks=True)
        assert fork_run(rebuild, camtrapr_host, "build_species_tree", kill_at)[0], f"step {kill_at} not reached"
        camtrapr_species.recover_tree(out)  # what the next run does first
        now = snapshot_links(out) if out.exists() else None
        state = "old" if now == old else "new" if now == new else None
        assert state is not None, f"killed before step {kill_at} of {total}: {sorted(now or {})}"
        seen[state] += 1
        for name in leftovers(out):  # only a previous tree kept aside (and named) may stay, and only whole
            assert name.endswith(".old") and state == "new", name
            assert snapshot_links(out.parent / name) == old
            shutil.rmtree(out.parent / name)
    return total, seen["old"], seen["new"]


@FORK_ONLY
def test_item15_4_a_rebuild_killed_anywhere_keeps_the_users_changes(tree: Path, registry, out: Path):  # noqa: F811
    total, old, new = _kill_loop(tree, registry, out)  # 61 steps: 38 leave the old tree, 23 the new
    assert old + new == total and old > 5 and new > 5


POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="folder names Windows refuses")


@POSIX_ONLY
def test_station_and_camera_folders_keep_the_trees_names(tmp_path: Path, registry, capsys):  # noqa: F811
    """camtrapR's recordTable() over the species tree names each station and camera after its folder there: the
    tree's own names, kept as they are (':', '?', a leading '.', a trailing '.' included), so that its Station and
    Camera are the record table's (and the camera table's)."""
    root, out = tmp_path / "inDir", tmp_path / "species"
    jpeg(root / "Site:1" / "fox_1.jpg", 0)
    jpeg(root / ".hidden" / "fox_2.jpg", 0)
    jpeg(root / "Zulu?" / "Cam 1." / "fox_3.jpg", 0)
    go(root, registry, tmp_path / "rt.csv", lang="en", log=SAY, species_folders=str(out))
    rows = camtrapr_host_rows(tmp_path / "rt.csv")
    assert rows == [(".hidden", "NA"), ("Site:1", "NA"), ("Zulu?", "Cam 1.")]
    assert listing(out) == [".hidden/fox/fox_2.jpg", "Site:1/fox/fox_1.jpg", "Zulu?/Cam 1./fox/fox_3.jpg"]
    assert "not a folder name" not in capsys.readouterr().err


def test_a_record_tables_station_that_is_no_folder_name_is_said(tmp_path: Path, registry, capsys):  # noqa: F811
    """A record table's Station is any text: one that cannot be a folder name ("A/B", "..") is placed under
    safe_folder_name's, and the run says so: recordTable() over the tree will call that station by its folder."""
    base = tmp_path / "survey"
    jpeg(base / "img" / "fox_1.jpg", 0)
    jpeg(base / "img" / "fox_2.jpg", 60)
    img = (base / "img").as_posix()
    table = write_r_csv(base / "record_table.csv", [["A/B", "UNID", "NA", img, "fox_1.jpg"],
                                                    ["..", "UNID", "NA", img, "fox_2.jpg"]])
    out = tmp_path / "species"
    go(table, registry, tmp_path / "rt.csv", lang="en", log=SAY, species_folders=str(out))
    assert listing(out) == ["A_B/fox/fox_1.jpg", "_/fox/fox_2.jpg"]
    err = capsys.readouterr().err
    assert "station 'A/B' is the folder 'A_B'" in err and "station '..' is the folder '_'" in err, err


def camtrapr_host_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [(r["Station"], r.get("Camera", "")) for r in csv.DictReader(fh)]
