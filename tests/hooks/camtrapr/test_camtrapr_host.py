"""The camtrapR host end to end on the fake backend: trees, record tables, options, outputs.

The fake backend labels files by name ("fox" → renard/fox, "reddeer" → cerf/red deer, "person",
"empty", "broken"), so every expected row below is computed by hand from the file dates.
"""
from __future__ import annotations

import csv
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.cli import main
from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.hooks.camtrapr.host import CamtrapRHost
from deepfaune_plugin.hooks.camtrapr.output import select
from deepfaune_plugin.hooks.camtrapr.species import MANIFEST as MARKER
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from deepfaune_plugin.types import ANIMAL, EMPTY, Decision
from fakes import registry_with_fake
from imagegen import make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)
HEADER = ["Station", "Camera", "Species", "DateTimeOriginal", "Date", "Time", "delta.time.secs", "delta.time.mins",
          "delta.time.hours", "delta.time.days", "Directory", "FileName", "n_images",
          "score", "top1", "seqnum", "predictionbase", "scorebase", "count"]


def jpeg(path: Path, seconds: float | None) -> Path:
    return make_jpeg(path, width=64, height=48, date=None if seconds is None else T0 + timedelta(seconds=seconds))


@pytest.fixture
def registry():
    reg = registry_with_fake()
    reg.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    return reg


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two stations; StationB keeps its images in a camera sub-folder; one stray file in inDir."""
    root = tmp_path / "inDir"
    sta = root / "StationA"
    jpeg(sta / "fox_1.jpg", 0)
    jpeg(sta / "fox_2.jpg", 5)            # 5 s later: same DeepFaune sequence
    jpeg(sta / "fox_3.jpg", 2400)         # 40 min after fox_1, 39 min 55 s after fox_2
    jpeg(sta / "person_1.jpg", 3600)
    jpeg(sta / "empty_1.jpg", 7200)
    (sta / "broken_1.jpg").write_bytes(b"not a jpeg")
    jpeg(root / "StationB" / "Cam1" / "reddeer_1.jpg", 86400)
    jpeg(root / "StationB" / "Cam1" / "reddeer_2.jpg", 86400 + 90)
    jpeg(root / "stray_fox.jpg", 0)
    return root


def go(source: Path, registry, output: Path | None = None, lang: str = "fr", log=lambda msg: None, **options):
    return run(source, RunSettings(backend="fake", lang=lang), host="camtrapr", host_options=options,
               output=output, registry=registry, progress=False, log=log)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def col(rows, *names):
    return [tuple(r[n] for n in names) for r in rows]


# ---------------------------------------------------------------- station tree


def test_tree_record_table_names_order_and_formats(tree: Path, registry):
    summary = go(tree, registry)
    out = tree / "deepfaune_recordTable.csv"
    assert summary.written == [out]
    with open(out, encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == HEADER
    rows = read_rows(out)
    assert col(rows, "Station", "Camera", "Species", "FileName") == [
        ("StationA", "NA", "renard", "fox_1.jpg"), ("StationA", "NA", "renard", "fox_2.jpg"),
        ("StationA", "NA", "renard", "fox_3.jpg"),
        ("StationB", "Cam1", "cerf", "reddeer_1.jpg"), ("StationB", "Cam1", "cerf", "reddeer_2.jpg"),
    ]
    first = rows[0]
    assert (first["DateTimeOriginal"], first["Date"], first["Time"]) == ("2024-05-03 06:00:00", "2024-05-03", "06:00:00")
    assert first["Directory"] == (tree / "StationA").absolute().as_posix()
    # min-delta-time 0: every record, delta to the previous record of the species at the station
    assert col(rows, "delta.time.secs", "delta.time.mins", "delta.time.hours", "delta.time.days", "n_images") == [
        ("0", "0", "0", "0", "1"),
        ("5", "0.1", "0", "0", "1"),          # 5/60 = 0.083 → 0.1
        ("2395", "39.9", "0.7", "0", "1"),    # 39.92 → 39.9; 39.9/60 = 0.665 → 0.7; 0.7/24 → 0
        ("0", "0", "0", "0", "1"),
        ("90", "1.5", "0", "0", "1"),
    ]
    # DeepFaune's columns: the two fox images share sequence 1 and its pooled score
    assert col(rows, "seqnum", "top1", "predictionbase", "count")[:2] == [("1", "renard", "renard", "1")] * 2
    assert rows[0]["score"] == rows[1]["score"] and float(rows[0]["score"]) >= 0.8
    # the stray file was reported, never read
    assert [p.relpath for p in summary.problems] == ["stray_fox.jpg"]
    assert "stray_fox.jpg" not in {d.relpath for d in summary.results.decisions}


@pytest.mark.parametrize("compared_to, fox3_delta", [
    ("lastIndependentRecord", ("2400", "40", "0.7", "0")),   # from fox_1, the last independent record
    ("lastRecord", ("2395", "39.9", "0.7", "0")),            # from fox_2, the last record
])
def test_tree_independence_30_minutes(tree: Path, registry, compared_to, fox3_delta):
    go(tree, registry, min_delta_time="30", delta_time_compared_to=compared_to)
    rows = read_rows(tree / "deepfaune_recordTable.csv")
    assert col(rows, "FileName", "n_images") == [("fox_1.jpg", "2"), ("fox_3.jpg", "1"), ("reddeer_1.jpg", "2")]
    assert col(rows, "delta.time.secs", "delta.time.mins", "delta.time.hours", "delta.time.days")[1] == fox3_delta


def test_include_non_animals_in_the_run_language(tree: Path, registry, tmp_path: Path):
    out = tmp_path / "rt.csv"
    go(tree, registry, output=out, lang="en", include=["human", "empty"])
    rows = read_rows(out)
    assert col(rows, "Station", "Species", "FileName") == [
        ("StationA", "empty", "empty_1.jpg"),
        ("StationA", "fox", "fox_1.jpg"), ("StationA", "fox", "fox_2.jpg"), ("StationA", "fox", "fox_3.jpg"),
        ("StationA", "human", "person_1.jpg"),
        ("StationB", "red deer", "reddeer_1.jpg"), ("StationB", "red deer", "reddeer_2.jpg"),
    ]
    assert not (tree / "deepfaune_recordTable.csv").exists()  # --output wins over the default place


def test_select_keeps_animals_and_asked_non_animals_never_failures():
    def d(key, failure=None):
        return Decision(relpath=key, date=T0, seqnum=1, predictionbase="", scorebase=0.0, prediction=key, score=1.0,
                        top1=key, count=0, humancount=0, category=ANIMAL if key in ("fox", "undefined") else EMPTY,
                        prediction_key=key, top1_key=key, failure=failure)

    decisions = [d("fox"), d("undefined"), d("empty"), d("human"), d("vehicle"), d("failed", "unreadable")]
    assert [x.prediction_key for x in select(decisions, ())] == ["fox"]
    assert [x.prediction_key for x in select(decisions, {"undefined", "vehicle"})] == ["fox", "undefined", "vehicle"]


def test_camera_table_from_first_and_last_image(tree: Path, registry, capsys):
    summary = go(tree, registry, camera_table=True)
    cam = tree / "deepfaune_cameraTable.csv"
    assert cam in summary.written
    # every dated image counts (the person and the empty one too), failures do not
    assert read_rows(cam) == [
        {"Station": "StationA", "Camera": "NA", "Setup_date": "2024-05-03 06:00:00", "Retrieval_date": "2024-05-03 08:00:00"},
        {"Station": "StationB", "Camera": "Cam1", "Setup_date": "2024-05-04 06:00:00", "Retrieval_date": "2024-05-04 06:01:30"},
    ]
    assert "warning" not in capsys.readouterr().err  # no station has setup == retrieval


def test_species_folders_hard_links_rebuilt_on_rerun(tree: Path, registry, tmp_path: Path):
    out = tmp_path / "species"
    summary = go(tree, registry, species_folders=str(out))
    assert out in summary.written
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [MARKER, "StationA/renard/fox_1.jpg", "StationA/renard/fox_2.jpg", "StationA/renard/fox_3.jpg",
                     "StationB/Cam1/cerf/reddeer_1.jpg", "StationB/Cam1/cerf/reddeer_2.jpg"]
    assert os.path.samefile(out / "StationA/renard/fox_1.jpg", tree / "StationA/fox_1.jpg")  # a hard link
    # a rerun with other options rebuilds the tree from scratch (no fox_1_2.jpg duplicates)
    go(tree, registry, lang="en", species_folders=str(out), include=["human"])
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert files == ["StationA/fox/fox_1.jpg", "StationA/fox/fox_2.jpg", "StationA/fox/fox_3.jpg",
                     "StationA/human/person_1.jpg", "StationB/Cam1/red deer/reddeer_1.jpg",
                     "StationB/Cam1/red deer/reddeer_2.jpg"]


def test_species_folders_never_overwrite_a_users_folder(tree: Path, registry, tmp_path: Path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(DeepfauneError, match="not empty and was not made by deepfaune"):
        go(tree, registry, species_folders=str(mine))
    assert (mine / "notes.txt").read_text() == "keep me"
    assert not (tree / "deepfaune_recordTable.csv").exists()  # refused before anything ran
    with pytest.raises(DeepfauneError, match="inside the source tree"):
        go(tree, registry, species_folders=str(tree / "sorted"))


def test_files_only_directly_in_indir_are_refused(tmp_path: Path, registry):
    jpeg(tmp_path / "flat" / "fox_1.jpg", 0)
    with pytest.raises(DeepfauneError, match="no .jpg files in station folders"):
        go(tmp_path / "flat", registry)


@pytest.mark.parametrize("options, message", [
    ({"min_delta_time": "2.5"}, "whole number of minutes"),
    ({"min_delta_time": "-1"}, "whole number of minutes"),
    ({"delta_time_compared_to": "lastIndependent"}, "lastIndependentRecord or lastRecord"),
    ({"include": ["human,cat"]}, "unknown 'cat'"),
])
def test_bad_options_fail_before_the_run(tree: Path, registry, options, message):
    with pytest.raises(DeepfauneError, match=message):
        go(tree, registry, **options)
    assert not (tree / "deepfaune_recordTable.csv").exists()


def test_output_must_be_csv(tree: Path, registry, tmp_path: Path):
    with pytest.raises(DeepfauneError, match="is a .csv file"):
        go(tree, registry, output=tmp_path / "rt.xlsx")


def test_scientific_names(tree: Path, registry):
    try:
        from deepfaune_plugin.taxonomy import taxon
    except ImportError:
        with pytest.raises(DeepfauneError, match="--scientific-names is not available yet"):
            go(tree, registry, scientific_names=True)
        return
    go(tree, registry, scientific_names=True)
    rows = read_rows(tree / "deepfaune_recordTable.csv")
    assert {r["Species"] for r in rows} == {taxon("fox").scientific_name, taxon("red deer").scientific_name}


def test_scientific_names_of_bird_groups_and_non_animals():
    pytest.importorskip("deepfaune_plugin.taxonomy")
    from deepfaune_plugin.hooks.camtrapr.host import scientific_namer

    name = scientific_namer()
    assert name("red deer") == "Cervus elaphus" and name("human") == "Homo sapiens"
    assert name("bird undefined") == "Aves"                      # bird, subgroup below threshold
    assert name("bird passerine") == name("passerine") != "passerine"
    assert [name(k) for k in ("empty", "vehicle", "undefined")] == ["empty", "vehicle", "undefined"]


def test_cli_options_reach_the_host(tree: Path, registry, tmp_path: Path):
    out = tmp_path / "cli.csv"
    code = main(["run", str(tree), "--host", "camtrapr", "--backend", "fake", "--lang", "en", "-q",
                 "--output", str(out), "--min-delta-time", "30", "--delta-time-compared-to", "lastRecord",
                 "--include", "human", "--include", "empty", "--camera-table"], registry=registry)
    assert code == 3  # the tree's broken file fails and its unplaced one is skipped: reported, not hidden
    rows = read_rows(out)
    assert col(rows, "Species", "FileName", "delta.time.secs") == [
        ("empty", "empty_1.jpg", "0"), ("fox", "fox_1.jpg", "0"), ("fox", "fox_3.jpg", "2395"),
        ("human", "person_1.jpg", "0"), ("red deer", "reddeer_1.jpg", "0")]
    assert (tmp_path / "cli_cameraTable.csv").is_file()


# ---------------------------------------------------------------- record table source


def write_r_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    """As R's write.csv(): an unnamed row-name column, every string quoted, NA unquoted."""
    header = ["", "Station", "Species", "DateTimeOriginal", "Directory", "FileName"]
    lines = [",".join(f'"{h}"' for h in header)]
    for i, row in enumerate(rows, start=1):
        cells = [f'"{i}"'] + [v if v == "NA" else f'"{v}"' for v in row]
        lines.append(",".join(cells))
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.fixture
def survey(tmp_path: Path) -> Path:
    """Images in folders with spaces and accents, listed by a record table beside them."""
    base = tmp_path / "Été 2024"
    nord = base / "Station Nord"
    jpeg(nord / "renard fox 1.JPG", 0)
    jpeg(nord / "renard fox 2.JPG", 4000)
    jpeg(nord / "cerf reddeer é.JPG", None)  # no EXIF date: the table's DateTimeOriginal is used
    jpeg(base / "Sud Forêt" / "fox Sud.JPG", 600)
    return base


def survey_rows(base: Path) -> list[list[str]]:
    nord = (base / "Station Nord").as_posix()
    return [
        ["Station Nord", "UNID", "2024-05-03 06:00:00", nord, "renard fox 1.JPG"],
        ["Station Nord", "UNID", "2024-05-03 07:06:40", nord, "renard fox 2.JPG"],
        ["Station Nord", "UNID", "2024-05-03 09:00:00", nord, "cerf reddeer é.JPG"],
        ["Sud Forêt", "UNID", "2024-05-03 06:10:00", "Sud Forêt", "fox Sud.JPG"],     # relative to the table
        ["Station Nord", "UNID", "2024-05-03 06:00:00", nord, "renard fox 1.JPG"],    # listed twice
        ["Station Nord", "UNID", "NA", nord, "gone.JPG"],                            # missing file
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_record_table_with_spaces_and_accents(survey: Path, registry, encoding):
    table = write_r_csv(survey / "record_table_0min_deltaT_2024-06-01.csv", survey_rows(survey), encoding)
    host = registry.host("camtrapr")
    assert host.detect(table) and not host.detect(survey)
    summary = go(table, registry, lang="en", min_delta_time=60)
    out = survey / "deepfaune_recordTable.csv"
    assert summary.written == [out]
    assert [p.relpath for p in summary.problems] == [f"{table.name} row 5", f"{table.name} row 6"]
    assert "same file as row 1" in summary.problems[0].reason and "file not found" in summary.problems[1].reason
    rows = read_rows(out)
    assert list(rows[0]) == [h for h in HEADER if h != "Camera"]  # the table had no Camera column
    nord = (survey / "Station Nord").as_posix()
    assert col(rows, "Station", "Species", "DateTimeOriginal", "delta.time.secs", "n_images", "Directory", "FileName") == [
        ("Station Nord", "fox", "2024-05-03 06:00:00", "0", "1", nord, "renard fox 1.JPG"),
        ("Station Nord", "fox", "2024-05-03 07:06:40", "4000", "1", nord, "renard fox 2.JPG"),
        ("Station Nord", "red deer", "2024-05-03 09:00:00", "0", "1", nord, "cerf reddeer é.JPG"),
        ("Sud Forêt", "fox", "2024-05-03 06:10:00", "0", "1", "Sud Forêt", "fox Sud.JPG"),
    ]


def test_record_table_of_moved_data_and_camera_column(survey: Path, registry, tmp_path: Path):
    """Directory written on another machine (C:/...): found again under the table's folder."""
    lines = ['"","Station","Camera","Species","DateTimeOriginal","Directory","FileName"',
             '"1","Station Nord","CT 01","UNID",2024-05-03 06:00:00,"C:/Users/léa/Été 2024/Station Nord","renard fox 1.JPG"',
             '"2","Station Nord","CT 02","UNID",2024-05-03 07:06:40,"C:/Users/léa/Été 2024/Station Nord","renard fox 2.JPG"']
    table = survey / "moved.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = go(table, registry, lang="en", camera_table=True)
    assert summary.problems == []
    rows = read_rows(survey / "deepfaune_recordTable.csv")
    assert col(rows, "Station", "Camera", "Directory") == [
        ("Station Nord", "CT 01", "C:/Users/léa/Été 2024/Station Nord"),
        ("Station Nord", "CT 02", "C:/Users/léa/Été 2024/Station Nord")]
    assert col(read_rows(survey / "deepfaune_cameraTable.csv"), "Camera", "Setup_date") == [
        ("CT 01", "2024-05-03 06:00:00"), ("CT 02", "2024-05-03 07:06:40")]


def test_record_table_problems_name_the_file(tmp_path: Path, registry):
    bad = tmp_path / "rt.csv"
    bad.write_text('"","Species","Directory","FileName"\n"1","fox","x","y.JPG"\n', encoding="utf-8")
    with pytest.raises(DeepfauneError, match=r"rt\.csv: not a camtrapR record table: missing column\(s\) Station"):
        go(bad, registry)
    nothing = write_r_csv(tmp_path / "none.csv", [["S1", "fox", "NA", "nowhere", "a.JPG"]])
    with pytest.raises(DeepfauneError, match=r"none\.csv: none of the table's files could be used"):
        go(nothing, registry)


def test_record_table_output_never_overwrites_the_source(survey: Path, registry):
    table = write_r_csv(survey / "rt.csv", survey_rows(survey)[:1])
    before = table.read_bytes()
    with pytest.raises(DeepfauneError, match="would overwrite the source record table"):
        go(table, registry, output=table)
    assert table.read_bytes() == before


# ---------------------------------------------------------------- issue 16 item 3: camtrapR exactly


def cli(registry, *argv: str) -> int:
    return main(["run", *argv, "--backend", "fake", "-q", "--no-store", "--no-report"], registry=registry)


def test_item16_3_tree_reads_the_files_recordtable_reads(tmp_path: Path, registry, capsys):
    """recordTable(): exiftool -r -ext jpg (any case), then names matching ^[._] dropped; hidden folders not
    entered; other formats only when recordTable(video = list(file_formats = ...)) names them."""
    root = tmp_path / "inDir"
    jpeg(root / "StationA" / "fox_1.jpg", 0)
    jpeg(root / "StationA" / "fox_2.JPG", 600)
    jpeg(root / "StationA" / "fox_3.jpeg", 1200)
    jpeg(root / "StationA" / "fox_4.png", 1800)
    jpeg(root / "StationA" / "_fox_5.jpg", 2400)
    jpeg(root / "StationA" / "._fox_6.jpg", 3000)
    jpeg(root / "StationA" / ".thumbs" / "fox_7.jpg", 3600)
    out = tmp_path / "rt.csv"
    # what camtrapR's own rule leaves out is not the source's media: said, not an incomplete run (issue 30.19)
    assert cli(registry, str(root), "--host", "camtrapr", "--output", str(out)) == 0
    assert col(read_rows(out), "FileName") == [("fox_1.jpg",), ("fox_2.JPG",)]
    err = capsys.readouterr().err
    assert "2 file(s) whose name starts with '.' or '_' left out" in err
    assert "2 file(s) of other formats left out" in err
    assert cli(registry, str(root), "--host", "camtrapr", "--output", str(out), "--file-formats", "jpg,JPEG") == 0
    assert col(read_rows(out), "FileName") == [("fox_1.jpg",), ("fox_2.JPG",), ("fox_3.jpeg",)]
    assert cli(registry, str(root), "--host", "camtrapr", "--output", str(out), "--file-formats", "jpg,txt") == 1
    assert "--file-formats jpg,txt: txt cannot be read" in capsys.readouterr().err


def test_item16_3_stations_sorted_as_r_orders_them(tmp_path: Path, registry):
    """R's order() in a UTF-8 locale ignores case and accents first: Alpha, b_station, épine, Zulu (Python's
    default order would give Alpha, Zulu, b_station, épine)."""
    root = tmp_path / "inDir"
    for i, station in enumerate(("Zulu", "épine", "b_station", "Alpha")):
        jpeg(root / station / "fox_1.jpg", i * 60)
    out = tmp_path / "rt.csv"
    assert cli(registry, str(root), "--host", "camtrapr", "--output", str(out), "--camera-table") == 0
    assert [r["Station"] for r in read_rows(out)] == ["Alpha", "b_station", "épine", "Zulu"]
    assert [r["Station"] for r in read_rows(tmp_path / "rt_cameraTable.csv")] == ["Alpha", "b_station", "épine",
                                                                                   "Zulu"]


def test_item16_3_collation_of_species_and_ties():
    from deepfaune_plugin.hooks.camtrapr.independence import r_collation_key

    names = ["renard", "Écureuil", "cerf", "Cerf", "écureuil", "ecureuil", "chamois", "cerf"]
    assert sorted(names, key=r_collation_key) == ["cerf", "cerf", "Cerf", "chamois", "ecureuil", "écureuil",
                                                  "Écureuil", "renard"]
    assert r_collation_key("cerf") == r_collation_key("cerf")  # a true tie: order() keeps the input order


def test_item16_3_relative_directory_as_camtrapr_wrote_it(tmp_path: Path, monkeypatch):
    """recordTable(inDir = "survey/img", writecsv = TRUE, outDir = "survey/results") run from proj/: Directory
    is relative to proj/, not to the table's folder, where a same-named decoy folder must not be taken."""
    from fakes import outcome_from_name

    registry = registry_with_fake(lambda item: "broken" if "results" in item.path.parts else outcome_from_name(item))
    registry.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    proj = tmp_path / "proj"
    jpeg(proj / "survey" / "img" / "StationA" / "fox_1.JPG", 0)
    decoy = proj / "survey" / "results" / "StationA" / "fox_1.JPG"
    decoy.parent.mkdir(parents=True)
    decoy.write_bytes(b"not the right file")
    table = write_r_csv(proj / "survey" / "results" / "rt.csv",
                        [["StationA", "UNID", "2024-05-03 06:00:00", "survey/img/StationA", "fox_1.JPG"]])
    monkeypatch.chdir(tmp_path)  # not R's working folder
    out = tmp_path / "out.csv"
    assert cli(registry, str(table), "--output", str(out), "--lang", "en") == 0
    assert col(read_rows(out), "Species", "Directory") == [("fox", "survey/img/StationA")]
    # inDir = "." with the table written into it: Directory "./StationA"
    jpeg(tmp_path / "flat" / "StationB" / "fox_2.JPG", 0)
    table = write_r_csv(tmp_path / "flat" / "rt.csv",
                        [["StationB", "UNID", "2024-05-03 06:00:00", "./StationB", "fox_2.JPG"]])
    assert cli(registry, str(table), "--output", str(out), "--lang", "en") == 0
    assert col(read_rows(out), "Species", "Directory") == [("fox", "./StationB")]


def test_item16_3_threshold_zero_labels_everything(tree: Path, registry, tmp_path: Path, capsys):
    out = tmp_path / "rt.csv"
    assert cli(registry, str(tree), "--host", "camtrapr", "--output", str(out), "--threshold", "0") == 3  # a file camtrapR skips
    assert {r["Species"] for r in read_rows(out)} == {"renard", "cerf"}
    assert cli(registry, str(tree), "--host", "camtrapr", "--output", str(out), "--threshold", "1.5") == 1
    assert "threshold must be between 0 and 1" in capsys.readouterr().err


def test_item16_3_species_sorted_as_r_orders_them(tmp_path: Path, registry):
    """Within a station, species in R's order: "empty" before "Homo sapiens" (Python would put capitals first)."""
    root = tmp_path / "inDir"
    jpeg(root / "S1" / "fox_1.jpg", 0)
    jpeg(root / "S1" / "person_1.jpg", 600)
    jpeg(root / "S1" / "empty_1.jpg", 1200)
    out = tmp_path / "rt.csv"
    assert cli(registry, str(root), "--host", "camtrapr", "--output", str(out), "--scientific-names",
               "--include", "human,empty") == 0
    assert [r["Species"] for r in read_rows(out)] == ["empty", "Homo sapiens", "Vulpes vulpes"]


def test_item15_15_a_record_table_with_a_200000_character_field_is_a_message(tmp_path, capsys, registry):
    table = tmp_path / "record.csv"
    table.write_text("Station,Species,DateTimeOriginal,Directory,FileName\n"
                     f"A,fox,2024-05-03 06:00:00,{'x' * 200_000},IMG_1.JPG\n", encoding="utf-8")
    assert main(["run", str(table), "--host", "camtrapr", "--backend", "fake", "-q", "--no-store"],
                registry=registry) == 1
    err = capsys.readouterr().err
    assert f"{table}: " in err and ("field larger than field limit" in err or "cannot read" in err)
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.csv"]
