"""Issue 15 items 13 and 16: only regular files are media, and a folder we do not follow is said.

A FIFO (or a device, a socket) named x.jpg used to hang a run forever: a read of a FIFO waits for a
writer. Each test that makes one also starts a guard that, should a regression read it, opens the FIFO
for writing after a minute, so the read ends and the test fails on its assertions instead of hanging.
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pandas as pd
import pytest

from deepfaune_plugin.cli import main
from deepfaune_plugin.engine.imageio import MediaError, decode_image
from deepfaune_plugin.exifdate import read_exif_date
from deepfaune_plugin.paths import NotRegularFileError
from deepfaune_plugin.walk import iter_media, iter_media_blocks
from fakes import registry_with_fake
from imagegen import make_jpeg

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")


def fifo(path: Path) -> Path:
    """A FIFO at `path`, with a guard that unblocks a reader stuck on it (see the module's docstring)."""
    os.mkfifo(path)
    stop = threading.Event()

    def unblock():
        if not stop.wait(60):
            try:
                with open(path, "wb"):
                    pass
            except OSError:
                pass

    threading.Thread(target=unblock, daemon=True).start()
    _GUARDS.append(stop)
    return path


_GUARDS: list[threading.Event] = []


@pytest.fixture(autouse=True)
def _stop_guards():
    yield
    while _GUARDS:
        _GUARDS.pop().set()


def _run(src: Path, out: Path, capsys) -> tuple[int, str]:
    rc = main(["run", str(src), "--backend", "fake", "--no-store", "--no-report", "-q", "--output", str(out)],
              registry=registry_with_fake())
    return rc, capsys.readouterr().err


def test_item15_13_fifo_is_not_media(tmp_path: Path, capsys):
    src = tmp_path / "season"
    make_jpeg(src / "cam1" / "fox_1.jpg", width=160, height=120)
    fifo(src / "cam1" / "x.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(src / "cam1" / "y.jpg"))
    try:
        rc, err = _run(src, tmp_path / "out.csv", capsys)
    finally:
        server.close()
    assert rc == 3  # the FIFO is a skipped file
    assert "warning: cam1/x.jpg: not a regular file (a FIFO (named pipe)); skipped" in err
    assert "warning: cam1/y.jpg: not a regular file (a socket); skipped" in err
    assert list(pd.read_csv(tmp_path / "out.csv")["filename"]) == ["cam1/fox_1.jpg"]


def test_item15_13_every_listing_and_reader_refuses_a_fifo(tmp_path: Path):
    make_jpeg(tmp_path / "a.jpg", width=160, height=120)
    pipe = fifo(tmp_path / "x.jpg")
    problems: list = []
    assert [rel for _, rel in iter_media(tmp_path, problems=problems)] == ["a.jpg"]
    assert [[rel for _, rel in block] for block in iter_media_blocks(tmp_path)] == [["a.jpg"]]
    assert [(p.relpath, p.reason) for p in problems] == [("x.jpg", "not a regular file (a FIFO (named pipe)); skipped")]
    with pytest.raises(MediaError, match="not a regular file"):
        decode_image(pipe)  # the engine too, should a host hand one over
    with pytest.raises(NotRegularFileError):
        read_exif_date(pipe)


def test_item15_13_timelapse_and_camtrapdp_listings_say_fifo(tmp_path: Path):
    from camtrapdp_helpers import make_package, run_on

    package = make_package(tmp_path / "pkg")
    target = package / "media" / "dep1" / "fox_2.jpg"
    target.unlink()
    fifo(target)
    summary, logs = run_on(package)
    assert "warning: media/dep1/fox_2.jpg: skipped: not a regular file (a FIFO (named pipe))" in logs
    assert "m02" not in {i.host_key for i in summary.manifest.items}


def test_item15_16_symlinked_sub_folder_is_said(tmp_path: Path, capsys):
    src = tmp_path / "season"
    make_jpeg(src / "cam1" / "fox_1.jpg", width=160, height=120)
    elsewhere = tmp_path / "card2"
    make_jpeg(elsewhere / "fox_9.jpg", width=160, height=120)
    os.symlink(elsewhere, src / "cam2")
    os.symlink(src, src / "cam1" / "loop")  # a loop back to the root
    rc, err = _run(src, tmp_path / "out.csv", capsys)
    assert rc == 3  # files skipped
    said = [line for line in err.splitlines() if "symbolic link to a folder" in line]
    assert len(said) == 2 and said[0].startswith("warning: cam1/loop/: symbolic link to a folder; not followed")
    assert said[1].startswith("warning: cam2/:")
    assert list(pd.read_csv(tmp_path / "out.csv")["filename"]) == ["cam1/fox_1.jpg"]
    problems: list = []
    list(iter_media(src, problems=problems))  # the walk the other hosts use says the same
    assert sorted(p.relpath for p in problems) == ["cam1/loop/", "cam2/"]


def test_item15_16_output_on_a_camtrapdp_enrichment_is_refused(tmp_path: Path, capsys):
    from camtrapdp_helpers import make_package, registry

    package = make_package(tmp_path / "pkg")
    before = (package / "observations.csv").read_bytes()
    rc = main(["run", str(package), "--backend", "fake", "--no-store", "--no-report", "-q",
               "--output", str(tmp_path / "x.csv")], registry=registry())
    err = capsys.readouterr().err
    assert rc == 1 and f"--output {tmp_path / 'x.csv'}: a Camtrap DP package is enriched in place" in err
    assert not (tmp_path / "x.csv").exists() and (package / "observations.csv").read_bytes() == before
    rc = main(["run", str(package), "--backend", "fake", "--no-store", "--no-report", "-q",
               "--output", str(package)], registry=registry())  # the package itself: what is done anyway
    assert rc == 3 and (package / "observations.csv").read_bytes() != before
