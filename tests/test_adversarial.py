"""Attacker and careless-user cases as data (issue 15): one row each, run as the user's command.

A row: id (the issue item first), a builder that plants the input in a temp folder and returns the command line
(`{src}`, `{models}`, `{tmp}` are filled in), the exit status expected, a fragment the message must hold, and what
must not appear afterwards (the proof that nothing was half-done or silently done otherwise). Adding a case is one
line in CASES.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from deepfaune_plugin.cli import main
from imagegen import RED, make_jpeg

BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def folder_with(name: str, content: bytes | str) -> Callable[[Path], None]:
    """A folder of one photo, plus a file planted beside it."""
    def build(src: Path) -> None:
        make_jpeg(src / "IMG_0001.JPG", blobs=[(RED, (100, 100, 300, 300))], seed=1)
        data = content.encode("utf-8") if isinstance(content, str) else content
        (src / name).write_bytes(data)
    return build


def models_manifest(text: str) -> Callable[[Path], None]:
    def build(src: Path) -> None:
        make_jpeg(src / "IMG_0001.JPG", seed=1)
        (src.parent / "badmodels").mkdir()
        (src.parent / "badmodels" / "deepfaune-models.json").write_text(text)
    return build


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], None]
    argv: str
    code: int
    message: str
    absent: tuple[str, ...] = ("deepfaune.csv",)  # in {src}: a run that went on as a plain folder would write it


RUN = "run {src} --models-dir {models} --no-store -q"
CASES = [
    Case("15.10 truncated datapackage.json", folder_with("datapackage.json", '{"profile": "https://'), RUN, 1,
         "not valid JSON (line 1, column 13"),
    Case("15.10 empty datapackage.json", folder_with("datapackage.json", ""), RUN, 1, "empty"),
    Case("15.10 datapackage.json is a list", folder_with("datapackage.json", "[1,2,3]"), RUN, 1,
         "must be a JSON object, not list"),
    Case("15.10 datapackage.json is null", folder_with("datapackage.json", "null"), RUN, 1,
         "must be a JSON object, not NoneType"),
    Case("15.10 datapackage.json in UTF-16", folder_with("datapackage.json", '{"a": 1}'.encode("utf-16")), RUN, 1,
         "UTF-16 text; save it as UTF-8"),
    Case("15.10 datapackage.json 100,000 deep", folder_with("datapackage.json", "[" * 100_000 + "]" * 100_000), RUN,
         1, "nested deeper than 64 levels"),
    Case("15.10 datapackage.json with a BOM, not Camtrap DP", folder_with("datapackage.json", '\ufeff{"profile": 1}'),
         RUN, 1, "'profile' is not a Camtrap DP profile URL (1) (to classify"),
    Case("15.11 YAML alias bomb as --package-metadata", folder_with("meta.yaml", BOMB),
         RUN + " --host camtrapdp --output {tmp}/pkg --package-metadata {src}/meta.yaml --deployments-csv "
               "{src}/meta.yaml", 1, "an alias bomb?",
         ("deepfaune.csv", "../pkg")),
    Case("15.15 models manifest with a version that is a number", models_manifest(
        '{"manifest_version": 1, "files": {}, "versions": {"1.4": 3}}'),
        "run {src} --models-dir {tmp}/badmodels --no-store -q", 1, "versions '1.4' must be JSON objects"),
    Case("15.15 models list on that manifest", models_manifest(
        '{"manifest_version": 1, "files": {}, "versions": {"1.4": 3}}'),
        "models list --models-dir {tmp}/badmodels", 1, "versions '1.4' must be JSON objects"),
    Case("15.15 models verify on that manifest", models_manifest(
        '{"manifest_version": 1, "files": {}, "versions": {"1.4": 3}}'),
        "models verify --models-dir {tmp}/badmodels", 1, "versions '1.4' must be JSON objects"),
    Case("15.15 --maxlag inf", folder_with("notes.txt", ""), RUN + " --maxlag inf", 1,
         "maxlag must be a number of seconds >= 0, got inf"),
    Case("15.11 models manifest nested 5,000 deep", models_manifest("[" * 5000 + "]" * 5000),
         "models list --models-dir {tmp}/badmodels", 1, "nested deeper than 64 levels"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_adversarial(case: Case, tmp_path: Path, standin_models: Path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    case.build(src)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    argv = case.argv.format(src=src, models=standin_models, tmp=tmp_path).split()
    assert main(argv) == case.code
    err = capsys.readouterr().err
    assert case.message in err, err
    assert "Traceback" not in err
    for name in case.absent:
        assert not (src / name).exists(), f"{name} was written: the run went on as something else"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before  # nothing left behind


def test_item15_3_formula_names_reach_spreadsheets_as_text_and_sort_reads_them_back(tmp_path, standin_models):
    """A file named like a formula: every CSV we write (result table, camtrapR record table, sort mapping)
    starts its cell with an apostrophe; numbers (negative ones too) stay numbers; `sort` finds the file."""
    import csv

    from deepfaune_plugin.table import escape_formula, unescape_formula

    name = '=HYPERLINK("x.example",1).jpg'
    src = tmp_path / "season"
    from datetime import datetime

    make_jpeg(src / "StationA" / name, blobs=[(RED, (100, 100, 300, 300))], seed=1, date=datetime(2024, 5, 3, 6))
    make_jpeg(src / "StationA" / "@x.jpg", blobs=[(RED, (100, 100, 300, 300))], seed=2, date=datetime(2024, 5, 4, 6))
    out = tmp_path / "out.csv"
    assert main(["run", str(src), "--models-dir", str(standin_models), "--no-store", "-q", "-o", str(out)]) == 0
    cells = [row[0] for row in csv.reader(out.open(encoding="utf-8"))][1:]
    assert "'StationA/@x.jpg" not in cells  # the cell starts with the folder: nothing to escape
    assert all(not c.startswith(("=", "+", "-", "@")) for c in cells)
    assert main(["run", str(src / "StationA"), "--models-dir", str(standin_models), "--no-store", "-q", "-o",
                 str(tmp_path / "flat.csv")]) == 0
    flat = sorted(row[0] for row in csv.reader((tmp_path / "flat.csv").open(encoding="utf-8")))[:-1]
    assert flat == ["'" + name, "'@x.jpg"]
    record = tmp_path / "rt.csv"
    assert main(["run", str(src), "--host", "camtrapr", "--models-dir", str(standin_models), "--no-store", "-q",
                 "-o", str(record), "--threshold", "0"]) == 0
    rows = list(csv.DictReader(record.open(encoding="utf-8")))
    assert sorted(r["FileName"] for r in rows) == ["'" + name, "'@x.jpg"]
    dest = tmp_path / "sorted"
    assert main(["sort", str(tmp_path / "flat.csv"), "--root", str(src / "StationA"), "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.rglob("*.jpg")) == sorted([name, "@x.jpg"])
    mapping = next(dest.rglob("deepfaune-sort.csv"))
    assert all(not c.startswith(("=", "@")) for row in csv.reader(mapping.open(encoding="utf-8")) for c in row)
    assert escape_formula("-3.5") == "-3.5" and escape_formula("-x") == "'-x" and escape_formula(2) == 2
    assert unescape_formula(escape_formula("+cmd|' /C calc'!A0")) == "+cmd|' /C calc'!A0"


def test_item15_14_dates_outside_1990_to_next_year_are_flagged_padded_and_kept_off_the_charts(tmp_path, standin_models):
    """A camera clock at 9999 or at year 1: the table keeps the date as read, four-digit years (R parses them),
    the warning column says it is suspect, and the review page is written (it crashed on 9999 before)."""
    import csv
    from datetime import datetime

    src = tmp_path / "season"
    make_jpeg(src / "StationA" / "far.jpg", blobs=[(RED, (100, 100, 300, 300))], seed=1,
              date=datetime(9999, 12, 31, 23, 59, 59))
    make_jpeg(src / "StationA" / "early.jpg", blobs=[(RED, (100, 100, 300, 300))], seed=2, date=datetime(1, 1, 1))
    make_jpeg(src / "StationA" / "fine.jpg", blobs=[(RED, (100, 100, 300, 300))], seed=3, date=datetime(2024, 5, 3))
    out = tmp_path / "out.csv"
    assert main(["run", str(src), "--models-dir", str(standin_models), "--no-store", "-q", "-o", str(out)]) == 0
    rows = {r["filename"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert rows["StationA/far.jpg"]["date"] == "9999:12:31 23:59:59"
    assert rows["StationA/early.jpg"]["date"] == "0001:01:01 00:00:00"
    assert "suspect date 9999:12:31 23:59:59" in rows["StationA/far.jpg"]["warning"]
    assert "suspect date 0001:01:01 00:00:00" in rows["StationA/early.jpg"]["warning"]
    assert "suspect" not in rows["StationA/fine.jpg"]["warning"]
    pages = list(tmp_path.glob("*report*.html")) + list(src.glob("*report*.html"))
    assert pages, "the review page was written"
    record = tmp_path / "rt.csv"
    assert main(["run", str(src), "--host", "camtrapr", "--models-dir", str(standin_models), "--no-store", "-q",
                 "-o", str(record), "--threshold", "0"]) == 0
    dates = sorted(r["DateTimeOriginal"] for r in csv.DictReader(record.open(encoding="utf-8")))
    assert dates[0] == "0001-01-01 00:00:00" and dates[-1] == "9999-12-31 23:59:59"


@pytest.mark.parametrize("plant", ["ledger", "species manifest", "lock holder"])
def test_item15_11_our_own_json_files_in_a_users_folder_are_read_within_the_limits_too(plant, tmp_path):
    """Files we leave in a user's folder can be replaced by anyone: read with the same depth limit (a
    100,000-deep planted file must not end in RecursionError)."""
    from deepfaune_plugin.hooks.camtrapr import species as camtrapr_species
    from deepfaune_plugin.hooks.timelapse import ledger as timelapse_ledger
    from deepfaune_plugin.transaction import _read_holder

    deep = "[" * 100_000 + "]" * 100_000
    if plant == "ledger":
        ddb = tmp_path / "TimelapseData.ddb"
        timelapse_ledger.ledger_path(ddb).write_text(deep)
        assert timelapse_ledger._load(ddb) == {}  # unreadable: treated as absent, as a broken ledger always was
    elif plant == "species manifest":
        (tmp_path / camtrapr_species.MANIFEST).write_text(deep)
        with pytest.raises(Exception) as err:
            camtrapr_species._load_manifest(tmp_path)
        assert not isinstance(err.value, RecursionError)
    else:
        (tmp_path / "x.lock").write_text(deep)
        assert _read_holder(tmp_path / "x.lock") is None
