"""`deepfaune run FOLDER` end to end on stand-in models: the folder workflow a new user follows."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from deepfaune_plugin.cli import main
from imagegen import GREEN, RED, make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)
ANIMAL_BLOB = [(RED, (300, 200, 600, 450))]
PERSON_BLOB = [(GREEN, (100, 100, 300, 500))]


@pytest.fixture
def season(tmp_path: Path) -> Path:
    src = tmp_path / "season"
    cam1 = src / "cam1"
    for i, gap in enumerate((0, 8, 16)):  # three images 8 s apart: one sequence
        make_jpeg(cam1 / f"IMG_{i:04d}.JPG", date=T0 + timedelta(seconds=gap), blobs=ANIMAL_BLOB, seed=i)
    make_jpeg(cam1 / "IMG_0003.JPG", date=T0 + timedelta(seconds=28), seed=3)  # 12 s later: new sequence, empty
    make_jpeg(src / "cam2" / "IMG_0001.JPG", date=T0, blobs=PERSON_BLOB, seed=4)  # same time, other folder
    make_jpeg(src / "cam2" / "nodate.jpg", blobs=ANIMAL_BLOB, seed=5)
    (src / "cam2" / "zero.jpg").write_bytes(b"")
    (src / "cam2" / "notes.jpg").write_text("not an image")
    (src / "cam2" / "readme.txt").write_text("ignored: not a media file")
    return src


def _run(args) -> int:
    return main([*map(str, args), "-q"])


def test_folder_run_writes_deepfaune_table(season: Path, standin_models: Path, tmp_path: Path, capsys):
    out = tmp_path / "out.csv"
    assert _run(["run", season, "--models-dir", standin_models, "--output", out]) == 3  # zero.jpg, notes.jpg fail
    err = capsys.readouterr().err
    assert "STAND-IN MODELS" in err and "MEANINGLESS" in err
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns[:10]) == ["filename", "date", "seqnum", "predictionbase", "scorebase",
                                        "prediction", "score", "top1", "count", "humancount"]
    rows = table.set_index("filename")
    assert len(rows) == 8
    # sequences: cam1 burst = 1, cam1 empty image = 2, then cam2 (dated, undated, failures)
    burst = [f"cam1/IMG_{i:04d}.JPG" for i in range(3)]
    assert rows.loc[burst, "seqnum"].nunique() == 1
    assert rows.loc["cam1/IMG_0003.JPG", "seqnum"] != rows.loc[burst[0], "seqnum"]
    assert rows.loc["cam2/IMG_0001.JPG", "seqnum"] not in set(rows.loc[burst + ["cam1/IMG_0003.JPG"], "seqnum"])
    assert rows.loc[burst[1], "date"] == "2024:05:03 06:00:08"
    # the stand-in detector: one animal box on the red blob, one person on the green one
    assert rows.loc[burst, "count"].tolist() == [1, 1, 1]
    assert rows.loc["cam2/IMG_0001.JPG", ["humancount", "prediction", "score"]].tolist() == [1, "humain", 1.0]
    assert rows.loc["cam1/IMG_0003.JPG", ["prediction", "score", "count"]].tolist() == ["vide", 1.0, 0]
    # the whole sequence shares one prediction, score and top1
    assert rows.loc[burst, "prediction"].nunique() == 1 and rows.loc[burst, "top1"].nunique() == 1
    # failures are rows with a reason, never silently empty
    assert rows.loc["cam2/zero.jpg", "failure"] == "zero-byte file"
    assert "not an image" in rows.loc["cam2/notes.jpg", "failure"]
    assert rows.loc["cam2/zero.jpg", "prediction"] == ""
    # sorted by seqnum then filename
    assert table["seqnum"].tolist() == sorted(table["seqnum"].tolist())
    assert "failures:" in err and "cam2/zero.jpg: zero-byte file" in err
    # beside the table: the review page and the record of the run (models' sha256, exact settings)
    import json

    record = json.loads((tmp_path / "out-run.json").read_text())  # named after --output out.csv
    assert record["settings"]["threshold"] == 0.8 and record["settings"]["detector_mode"] == "DFbsMDS"
    manifest = json.loads((standin_models / "deepfaune-models.json").read_text())
    used = {f["file"]: f["sha256"] for f in record["models"]["files"].values()}
    assert used and all(manifest["files"][name]["sha256"] == sha for name, sha in used.items())
    assert (tmp_path / "out-report.html").is_file() and not (tmp_path / "deepfaune-report.html").exists()


def test_language_threshold_exclude_and_xlsx(season: Path, standin_models: Path, tmp_path: Path):
    out = tmp_path / "out.xlsx"
    assert _run(["run", season, "--models-dir", standin_models, "--output", out, "--lang", "en",
                 "--threshold", "0.99", "--exclude", "wolverine,reindeer"]) == 3
    from deepfaune_plugin.table import read_table

    table = read_table(out).set_index("filename")
    assert table.loc["cam2/IMG_0001.JPG", "prediction"] == "human"
    assert table.loc["cam1/IMG_0003.JPG", "prediction"] == "empty"
    animal = table.loc["cam1/IMG_0000.JPG"]
    assert animal["top1"] not in ("wolverine", "reindeer")
    if float(animal["score"]) < 0.99:
        assert animal["prediction"] == "undefined"


def test_default_output_goes_into_the_source(season: Path, standin_models: Path):
    assert _run(["run", season, "--models-dir", standin_models]) == 3
    assert (season / "deepfaune.csv").is_file()


def test_clear_errors(season: Path, tmp_path: Path, standin_models: Path, capsys):
    assert _run(["run", season, "--models-dir", tmp_path / "nothing"]) == 1
    assert "no models installed" in capsys.readouterr().err
    assert _run(["run", tmp_path / "missing", "--models-dir", standin_models]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert _run(["run", season, "--models-dir", standin_models, "--lang", "xx"]) == 1
    assert "language 'xx'" in capsys.readouterr().err
    assert _run(["run", season, "--models-dir", standin_models, "--exclude", "unicorn"]) == 1
    assert "unknown species 'unicorn'" in capsys.readouterr().err


def test_tampered_model_is_refused(season: Path, tmp_path: Path, standin_models: Path, capsys):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(standin_models, models)
    from deepfaune_plugin.models.installed import InstalledModels

    victim = models / InstalledModels(models).file_name("1.4", "classifier")
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert _run(["run", season, "--models-dir", models]) == 1
    err = capsys.readouterr().err
    assert victim.name in err and "sha256" in err
    assert main(["models", "verify", "--models-dir", str(models)]) == 1


def test_console_script_from_scratch(tmp_path: Path, shared: Path):
    """The README's walk-through: stand-ins, then the Camtrap DP example's media as a plain folder."""
    media = shared / "data" / "camtrap-dp-1.0.2" / "example" / "media"
    models, out = tmp_path / "M", tmp_path / "out.csv"
    cmd = [str(Path(sys.executable).parent / "deepfaune")]  # the console script pip installed
    subprocess.run(cmd + ["models", "stand-in", str(models), "--version", "1.4"], check=True, capture_output=True,
                   cwd=tmp_path)
    res = subprocess.run(cmd + ["run", str(media), "--models-dir", str(models), "--output", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 10
    assert set(d[:10] for d in table["date"]) == {"2021:04:11"}  # read from EXIF, not from the file names
    assert table["seqnum"].nunique() == 1  # a burst 1 s apart: one sequence
    assert (table["failure"] == "").all()
