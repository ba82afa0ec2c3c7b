"""Issue 16 item 6: the summary and the exit status tell the truth about files without a result.

Exit 0 only when every file of the source has a result (a truncated JPEG decoded as far as it goes has
one, with a warning); 3 when the run finished and wrote its outputs but some files failed or were skipped
(missing, not fetched).  The console summary and deepfaune-run.json count all of them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from camtrapdp_helpers import make_package, stamp
from deepfaune_plugin.cli import EXIT_INCOMPLETE, EXIT_OK, main
from imagegen import RED, make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)


def _run(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["run", *map(str, args), "-q"])
    return status, capsys.readouterr().err


def _record(folder: Path, name: str = "out-run.json") -> dict:
    """The run record; `--output out.csv` names it out-run.json."""
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _good(folder: Path, n: int = 2) -> list[Path]:
    return [make_jpeg(folder / "cam1" / f"IMG_{i:04d}.JPG", date=T0 + timedelta(seconds=30 * i),
                      blobs=[(RED, (300, 200, 600, 450))], seed=i) for i in range(n)]


def test_item16_6_every_file_with_a_result_exits_0(tmp_path, standin_models, capsys):
    src = tmp_path / "season"
    _good(src)
    status, err = _run(capsys, src, "--models-dir", standin_models, "--output", tmp_path / "out.csv")
    assert status == EXIT_OK == 0
    assert "2 files, 2 sequences, 0 failed, 0 skipped, 0 with warnings" in err
    counts = _record(tmp_path)["counts"]
    assert (counts["files"], counts["failed"], counts["skipped"], counts["with_warnings"], counts["complete"]) == \
        (2, 0, 0, 0, True)


def test_item16_6_failed_and_truncated_files_are_counted_and_exit_3(tmp_path, standin_models, capsys):
    src = tmp_path / "season"
    good = _good(src)[0].read_bytes()
    (src / "cam1" / "IMG_0100.JPG").write_bytes(good[:len(good) * 3 // 5])  # a card pulled out mid-write
    (src / "cam1" / "notes.jpg").write_text("not a photo")
    status, err = _run(capsys, src, "--models-dir", standin_models, "--output", tmp_path / "out.csv")
    assert status == EXIT_INCOMPLETE == 3
    assert "4 files, 2 sequences, 1 failed, 0 skipped, 1 with warnings" in err  # the cut one: IMG_0000's date
    assert "cam1/IMG_0100.JPG: truncated JPEG: decoded the part present" in err
    assert "cam1/notes.jpg: not an image (unrecognised format)" in err
    assert "1 file(s) have no result (1 failed, 0 skipped; listed above): exit status 3" in err and "exit status 3" in err
    record = _record(tmp_path)
    counts = record["counts"]
    assert (counts["files"], counts["failed"], counts["skipped"], counts["with_warnings"], counts["complete"]) == \
        (4, 1, 0, 1, False)
    assert record["warnings"] == [{"file": "cam1/IMG_0100.JPG", "warning": "truncated JPEG: decoded the part present"}]


def test_item16_6_a_truncated_file_alone_still_exits_0(tmp_path, standin_models, capsys):
    src = tmp_path / "season"
    good = _good(src, 1)[0]
    good.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    status, err = _run(capsys, src, "--models-dir", standin_models, "--output", tmp_path / "out.csv")
    assert status == 0 and "1 files, 1 sequences, 0 failed, 0 skipped, 1 with warnings" in err


def test_item16_6_skipped_files_exit_3(tmp_path, standin_models, capsys):
    src = tmp_path / "season"
    _good(src)
    (src / "cam1" / "IMG_0009.JPG").symlink_to(src / "cam1" / "gone.JPG")  # broken: listed, never classified
    status, err = _run(capsys, src, "--models-dir", standin_models, "--output", tmp_path / "out.csv")
    assert status == EXIT_INCOMPLETE
    assert "2 files, 2 sequences, 0 failed, 1 skipped, 0 with warnings" in err
    assert "1 file(s) have no result (0 failed, 1 skipped" in err
    counts = _record(tmp_path)["counts"]
    assert (counts["skipped"], counts["complete"]) == (1, False)


@pytest.mark.skipif(sys.platform != "linux", reason="file names of any bytes are a Linux thing")
def test_item16_6_a_note_is_not_a_skipped_file(tmp_path, standin_models, capsys):
    src = tmp_path / "season"
    _good(src, 1)
    make_jpeg(Path(os.fsdecode(bytes(src / "cam1") + b"/chamois\xe9.jpg")), date=T0, seed=7)  # Latin-1 name
    status, err = _run(capsys, src, "--models-dir", standin_models, "--output", tmp_path / "out.csv")
    assert "not valid UTF-8" in err  # said once, as a note: the file is classified
    assert status == 0 and "2 files, 1 sequences, 0 failed, 0 skipped" in err


def test_item16_6_remote_media_not_fetched_are_skipped_files(tmp_path, standin_models, capsys):
    remote = [[f"r{i}", "dep2", "", stamp(3000 + i), f"http://127.0.0.1:9/asset{i}", "true", f"fox_{i}.JPG",
               "image/jpeg", "", "", ""] for i in range(3)]
    package = make_package(tmp_path / "pkg", extra_media_rows=remote)
    status, err = _run(capsys, package, "--models-dir", standin_models)
    assert "3 media given by URL were skipped" in err
    assert status == EXIT_INCOMPLETE
    assert "6 files" in err and "1 failed, 3 skipped" in err  # broken_1.jpg fails; the 3 URLs are skipped
    counts = _record(package, "deepfaune-run.json")["counts"]  # no --output: the plain name
    assert (counts["failed"], counts["skipped"], counts["complete"]) == (1, 3, False)


def test_item16_6_exit_codes_are_in_run_help():
    out = subprocess.run([sys.executable, "-m", "deepfaune_plugin.cli", "run", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "exit status:" in out
    for line in ("  0    every file has a result", "  1    stopped with an error", "  2    the command line",
                 "  3    finished and wrote the outputs, but some files have no result", "  130  interrupted"):
        assert line in out, line
