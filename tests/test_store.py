"""Long runs: the result store makes runs resumable (even after kill -9) and re-decisions free."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.store import ResultStore, decode, encode
from deepfaune_plugin.types import ANIMAL, PERSON, Detection, MediaItem, RawResult
from imagegen import GREEN, RED, make_jpeg

DEEPFAUNE = str(Path(sys.executable).parent / "deepfaune")
T0 = datetime(2024, 5, 3, 6, 0, 0)


def _season(root: Path, n: int, size=(800, 600)) -> Path:
    for i in range(n):
        blobs = [(RED, (100, 100, 400, 350))] if i % 3 == 0 else [(GREEN, (50, 50, 250, 450))] if i % 3 == 1 else []
        make_jpeg(root / f"cam{i % 2}" / f"IMG_{i:04d}.JPG", *size, date=T0 + timedelta(seconds=7 * i),
                  blobs=blobs, seed=i)
    return root


def test_encode_decode_is_lossless():
    raw = RawResult("a/b.jpg", 4000, 3000, [Detection((1.1, 2.2, 3000.123456789, 2999.5), 0.87654321, ANIMAL, "DF"),
                                            Detection((0.0, 0.0, 5.0, 5.0), 0.61, PERSON, "MDS")], selected=0,
                    logits=np.array([1.5, -2.25, 3.1415927], np.float32), bird_logits=None,
                    date=datetime(2021, 4, 11, 20, 43, 9), date_source="exif", warnings=["truncated JPEG"])
    back = decode("a/b.jpg", encode(raw))
    assert back.detections == raw.detections
    assert back.logits.tobytes() == raw.logits.tobytes() and back.bird_logits is None
    assert (back.width, back.height, back.selected, back.date, back.warnings) == (4000, 3000, 0, raw.date, raw.warnings)


def test_identity_size_mtime_and_content(tmp_path: Path):
    path = make_jpeg(tmp_path / "x.jpg", seed=1)
    item = MediaItem(path, "x.jpg", "")
    store = ResultStore(tmp_path / "s.sqlite")
    assert store.save("fp", [(item, RawResult("x.jpg", 8, 6))]) == 1
    assert store.save("fp", [(item, RawResult("x.jpg", failure="boom"))]) == 0  # failures are retried, not kept
    assert set(store.lookup("fp", [item])) == {"x.jpg"}
    assert store.lookup("other models", [item]) == {}
    os.utime(path, ns=(1, 1))  # copied elsewhere: new mtime, same bytes -> still recognised
    assert set(store.lookup("fp", [item])) == {"x.jpg"}
    make_jpeg(path, seed=2)  # new content
    assert store.lookup("fp", [item]) == {}


def test_redecide_runs_no_model(tmp_path: Path, standin_models: Path, monkeypatch):
    src = _season(tmp_path / "src", 6)
    store = tmp_path / "store.sqlite"
    base = dict(models_dir=standin_models)
    first = run(src, RunSettings(**base), output=tmp_path / "a.csv", store=store, progress=False)
    assert first.results.backend_info["computed"] == 6

    from deepfaune_plugin.hooks import deepfaune as deepfaune_backend

    def no_model(*args, **kwargs):
        raise AssertionError("a re-decision must not load a model")

    monkeypatch.setattr(deepfaune_backend.DeepFauneBackend, "open", no_model)
    settings = RunSettings(threshold=0.5, maxlag=5, lang="en", exclude=("fox",), **base)
    again = run(src, settings, output=tmp_path / "b.csv", store=store, progress=False)
    assert again.results.backend_info["reused"] == 6 and again.results.backend_info["computed"] == 0
    monkeypatch.undo()
    fresh = run(src, settings, output=tmp_path / "c.csv", store=False, progress=False)
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "c.csv").read_bytes()
    assert fresh.results.backend_info.get("reused", 0) == 0


def test_new_images_are_the_only_ones_processed(tmp_path: Path, standin_models: Path):
    src = _season(tmp_path / "src", 4)
    store = tmp_path / "store.sqlite"
    settings = RunSettings(models_dir=standin_models)
    run(src, settings, output=tmp_path / "a.csv", store=store, progress=False)
    make_jpeg(src / "cam0" / "IMG_9999.JPG", date=T0 + timedelta(seconds=8), blobs=[(RED, (10, 10, 300, 300))])
    summary = run(src, settings, output=tmp_path / "b.csv", store=store, progress=False)
    assert (summary.results.backend_info["computed"], summary.results.backend_info["reused"]) == (1, 4)
    seq = {d.relpath: d.seqnum for d in summary.results.decisions}
    assert seq["cam0/IMG_9999.JPG"] == seq["cam0/IMG_0000.JPG"]  # sequences re-formed with the new image


def _stored_rows(store: Path) -> int:
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return db.execute("SELECT count(*) FROM raw").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("after_rows", [1, 17])
def test_kill_9_then_resume_gives_identical_outputs(tmp_path: Path, standin_models: Path, after_rows: int):
    src = _season(tmp_path / "src", 30, size=(1600, 1200))
    cmd = [DEEPFAUNE, "run", str(src), "--models-dir", str(standin_models), "--quiet", "--threads", "1"]
    subprocess.run(cmd + ["--output", str(tmp_path / "ref.csv"), "--store", str(tmp_path / "ref.sqlite")],
                   check=True, capture_output=True)
    store, out = tmp_path / "s.sqlite", tmp_path / "out.csv"
    proc = subprocess.Popen(cmd + ["--output", str(out), "--store", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _stored_rows(store) < after_rows and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = _stored_rows(store)
    assert 0 < stored < 30, "the run must have been killed part-way"
    assert not out.exists()
    res = subprocess.run(cmd + ["--output", str(out), "--store", str(store)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"{stored} of 30 files already computed" in res.stderr
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_kill_during_final_write_keeps_previous_output(tmp_path: Path, standin_models: Path):
    src = _season(tmp_path / "src", 3)
    out, store = tmp_path / "out.csv", tmp_path / "s.sqlite"
    out.write_text("the previous results\n")
    # the child dies (os._exit, no clean-up) right where the new output would replace the old one
    code = (
        "import os, sys\n"
        "os.replace = lambda *a: os._exit(9)\n"
        "from deepfaune_plugin.cli import main\n"
        f"sys.exit(main(['run', {str(src)!r}, '--models-dir', {str(standin_models)!r}, '--output', {str(out)!r},"
        f" '--store', {str(store)!r}, '-q']))\n"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True).returncode == 9
    assert out.read_text() == "the previous results\n"
    assert len(list(tmp_path.glob(".out.csv.*.part"))) == 1  # the killed write's leftover...
    assert subprocess.run([DEEPFAUNE, "run", str(src), "--models-dir", str(standin_models), "--output", str(out),
                           "--store", str(store), "-q"], capture_output=True).returncode == 0
    assert out.read_text().startswith("filename,date,seqnum")
    assert not list(tmp_path.glob(".out.csv.*.part"))  # ...cleaned by the next run


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path, standin_models: Path):
    src = _season(tmp_path / "src", 30, size=(1600, 1200))
    store, out = tmp_path / "s.sqlite", tmp_path / "out.csv"
    cmd = [DEEPFAUNE, "run", str(src), "--models-dir", str(standin_models), "--output", str(out),
           "--store", str(store), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _stored_rows(store) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert not out.exists()
    res = subprocess.run(cmd + ["-q"], capture_output=True, text=True)
    assert res.returncode == 0 and "files already computed" in res.stderr


# --- identity from content (issue 15 item 8, issue 16 item 1), as the user's command, in the default store ---

def _cli(capsys, *argv, status: int = 0) -> str:
    from deepfaune_plugin.cli import main

    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == status, err
    return err


def _user_store() -> Path:
    return Path(os.environ["XDG_CACHE_HOME"]) / "deepfaune-plugin" / "results" / "store.sqlite"


def test_item16_1_moved_season_computes_nothing(tmp_path: Path, standin_models: Path, capsys):
    season = _season(tmp_path / "season", 4, size=(320, 240))
    models = ("--models-dir", str(standin_models), "-q", "--no-report")
    first = _cli(capsys, "run", str(season), "-o", str(tmp_path / "a.csv"), *models)
    assert "already computed" not in first and _user_store().exists()  # one store per user by default
    season.rename(tmp_path / "s2")  # mv season s2 && deepfaune run s2
    again = _cli(capsys, "run", str(tmp_path / "s2"), "-o", str(tmp_path / "b.csv"), *models)
    assert "4 of 4 files already computed" in again
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_item15_8_edit_keeping_size_and_mtime_is_recomputed(tmp_path: Path, standin_models: Path, capsys):
    season = _season(tmp_path / "season", 3, size=(320, 240))
    models = ("--models-dir", str(standin_models), "-q", "--no-report")
    _cli(capsys, "run", str(season), "-o", str(tmp_path / "a.csv"), *models)
    edited = season / "cam0" / "IMG_0000.JPG"
    st = edited.stat()
    data = edited.read_bytes()
    assert data.count(b"2024:05:03 06:00:00") >= 1
    edited.write_bytes(data.replace(b"2024:05:03 06:00:00", b"2023:05:03 06:00:00"))  # what exiftool -P does
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (edited.stat().st_size, edited.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    err = _cli(capsys, "run", str(season), "-o", str(tmp_path / "b.csv"), *models)
    assert "2 of 3 files already computed" in err
    rows = (tmp_path / "b.csv").read_text().splitlines()
    assert any(r.startswith("cam0/IMG_0000.JPG,2023:05:03 06:00:00,") for r in rows), rows


def test_item16_1_ddb_instead_of_its_folder_finds_the_results(tmp_path: Path, standin_models: Path, capsys):
    from test_timelapse_host import make_image_set

    ddb = make_image_set(tmp_path / "set")
    models = ("--models-dir", str(standin_models), "-q", "--no-report")
    # the image set holds a broken file: both runs end with status 3 (a file without a result)
    _cli(capsys, "run", str(tmp_path / "set"), "--host", "folder", "-o", str(tmp_path / "a.csv"), *models, status=3)
    err = _cli(capsys, "run", str(ddb), *models, status=3)
    assert "5 of 6 files already computed" in err  # the broken file failed: failures are retried, never stored


def test_item16_1_datapackage_json_instead_of_its_folder_finds_the_results(tmp_path: Path, standin_models: Path,
                                                                         capsys):
    from camtrapdp_helpers import make_package

    package = make_package(tmp_path / "pkg")
    models = ("--models-dir", str(standin_models), "-q", "--no-report")
    # the package holds a broken file: both runs end with status 3 (a file without a result)
    _cli(capsys, "run", str(package / "media"), "-o", str(tmp_path / "a.csv"), *models, status=3)
    err = _cli(capsys, "run", str(package / "datapackage.json"), *models, status=3)
    assert "5 of 6 files already computed" in err


def test_item16_1_identical_copies_share_one_stored_result(tmp_path: Path):
    a = make_jpeg(tmp_path / "a" / "x.jpg", seed=3)
    b = tmp_path / "b" / "renamed.jpg"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    store = ResultStore(tmp_path / "s.sqlite")
    store.save("fp", [(MediaItem(a, "x.jpg", ""), RawResult("x.jpg", 8, 6))])
    found = store.lookup("fp", [MediaItem(b, "renamed.jpg", "")])
    assert list(found) == ["renamed.jpg"] and found["renamed.jpg"].relpath == "renamed.jpg"
