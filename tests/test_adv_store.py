"""The result store, the run's robustness and the CLI's arguments, attacked (issue 30: items 13, 14, 17, 18, 20).

As in test_adversarial.py, a row per case: id (the issue item first), a builder that plants the input under a temp
folder, the command line (`{src}`, `{models}`, `{tmp}` filled in), the exit status, a fragment of what the command
says (stdout or stderr), and a check of what must hold afterwards (a file byte-for-byte unchanged, a label kept).
"""
from __future__ import annotations

import csv
import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from deepfaune_plugin.cli import main
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.types import MediaItem, RawResult
from imagegen import RED, make_jpeg
from timelapse_build import Control, create_ddb, write_template

FP = "f" * 64


def photo(src: Path, name: str = "IMG_0001.JPG", seed: int = 1) -> Path:
    return make_jpeg(src / name, width=320, height=240, blobs=[(RED, (100, 100, 200, 200))], seed=seed)


def season(src: Path) -> None:
    photo(src)


def timelapse_set(src: Path) -> None:
    """A Timelapse image set as Timelapse leaves it: one photo, its template and TimelapseData.ddb."""
    photo(src)
    tdb = write_template(src / "TimelapseTemplate.tdb", [Control("Species", "FixedChoice", choices=("fox",))])
    create_ddb(tdb, src / "TimelapseData.ddb", [("IMG_0001.JPG", None)])


def store_with_label(label: str = "fox", at: str | None = None, entries: int = 2) -> Callable[[Path], None]:
    """A season, and a store at {tmp}/s.sqlite holding `entries` model outputs and a person's label of its photo
    (its date replaced by `at` when given: a damaged row)."""
    def build(src: Path) -> None:
        store = ResultStore(src.parent / "s.sqlite")
        try:
            items = [MediaItem(photo(src.parent / "other", f"{n}.jpg", seed=10 + n), f"{n}.jpg", "")
                     for n in range(entries)]
            store.save(FP, [(item, RawResult(item.relpath, 320, 240)) for item in items])
            store.set_human([(MediaItem(photo(src), "IMG_0001.JPG", ""), label)], "ann")
            if at is not None:
                store.db.execute("UPDATE human SET at=?", (at,))
        finally:
            store.close()
    return build


def elongated(kind: str) -> Callable[[Path], None]:
    """A season whose second file is one pixel thin: 1x20000 JPEG or 65000x1 PNG."""
    def build(src: Path) -> None:
        photo(src)
        if kind == "jpeg":
            make_jpeg(src / "IMG_0002.JPG", width=1, height=20000, seed=2)
        else:
            Image.new("RGB", (65000, 1), (90, 120, 60)).save(src / "IMG_0002.PNG")
    return build


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unchanged(name: str) -> Callable[[Path, dict], None]:
    """`name` (under {tmp}) byte-for-byte as built, and no -wal/-shm beside it."""
    def check(tmp: Path, before: dict) -> None:
        assert _digest(tmp / name) == before[name]
        assert not list(tmp.glob(f"{name}-*")), "SQLite files were created beside it"
    return check


def labels_kept(raw: int) -> Callable[[Path, dict], None]:
    def check(tmp: Path, before: dict) -> None:
        with sqlite3.connect(tmp / "s.sqlite") as db:
            assert db.execute("SELECT label, reviewer FROM human").fetchall() == [("fox", "ann")]
            assert db.execute("SELECT count(*) FROM raw").fetchone()[0] == raw
    return check


def labels_saved(tmp: Path, before: dict) -> None:
    assert not (tmp / "s.sqlite").exists()
    (saved,) = tmp.glob("s.sqlite.labels-*.csv")
    rows = list(csv.DictReader(saved.open(encoding="utf-8")))
    assert [(r["relpath"], r["label"], r["reviewer"]) for r in rows] == [("IMG_0001.JPG", "fox", "ann")]


def failure_row(name: str, fragment: str) -> Callable[[Path, dict], None]:
    """The run wrote its table, `name` with its failure, the other photo with a result."""
    def check(tmp: Path, before: dict) -> None:
        rows = {r["filename"]: r for r in csv.DictReader((tmp / "src" / "deepfaune.csv").open(encoding="utf-8"))}
        assert fragment in rows[name]["failure"]
        assert rows["IMG_0001.JPG"]["failure"] == ""
    return check


def nothing_written(tmp: Path, before: dict) -> None:
    assert not (tmp / "src" / "deepfaune.csv").exists()


def not_writable(folder: str) -> Callable[[pytest.MonkeyPatch, Path], None]:
    """The tests run as root, for whom every folder is writable: os.access says `folder` is not, as it would on
    a read-only disk or a folder of another user."""
    def patch(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
        import os

        real = os.access
        target = tmp / folder
        target.mkdir(exist_ok=True)
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == target and mode & os.W_OK
                            else real(p, mode, **kw))
    return patch


def interrupted_at_once(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """Ctrl-C during the first file (the handler's flag set, as the SIGINT handler sets it)."""
    from contextlib import contextmanager

    from deepfaune_plugin import inference

    @contextmanager
    def stop_now():
        stop = inference._Stop()
        stop.requested = True
        yield stop

    monkeypatch.setattr(inference, "_graceful_interrupt", stop_now)


def detector_breaks_contract(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """The detector answers with an output of the wrong shape, as a wrong model file would (onnx_models checks)."""
    from deepfaune_plugin.engine import onnx_models

    def detect(self, tensor, lb):
        raise onnx_models.ModelContractError(self.path, "output 'output0' has shape (1, 5, 9), expected [1, 7, anchors]")

    monkeypatch.setattr(onnx_models.OnnxDetector, "detect", detect)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], None]
    argv: str
    code: int
    message: str
    check: Callable[[Path, dict], None] | None = None
    absent: str = ""  # what the command must not say
    patch: Callable[[pytest.MonkeyPatch, Path], None] | None = None


RUN = "run {src} --models-dir {models} --no-store -q"
STORE_RUN = "run {src} --models-dir {models} --store {tmp}/s.sqlite -q"
CASES = [
    Case("13 store info counts people's labels", store_with_label(), "store info --store {tmp}/s.sqlite", 0,
         "people's labels (deepfaune review): 1; not a cache", labels_kept(2)),
    Case("13 store clear keeps people's labels", store_with_label(), "store clear --store {tmp}/s.sqlite --yes", 0,
         "2 model outputs deleted; 1 people's labels kept", labels_kept(0)),
    Case("13 store clear's question names the labels it keeps", store_with_label(),
         "store clear --store {tmp}/s.sqlite", 1, "keep the 1 people's labels (--drop-labels deletes them too)",
         labels_kept(2)),
    Case("13 store clear --drop-labels saves them to a CSV first", store_with_label(),
         "store clear --store {tmp}/s.sqlite --yes --drop-labels", 0, "1 people's labels saved to", labels_saved),
    Case("14 --store at a Timelapse .ddb", timelapse_set, RUN.replace("--no-store", "--store {src}/TimelapseData.ddb"),
         1, "not a deepfaune result store (an SQLite database of another program", unchanged("src/TimelapseData.ddb")),
    Case("14 store clear on a Timelapse .ddb", timelapse_set, "store clear --store {src}/TimelapseData.ddb --yes", 1,
         "not a deepfaune result store", unchanged("src/TimelapseData.ddb")),
    Case("14 store info on a Timelapse .ddb", timelapse_set, "store info --store {src}/TimelapseData.ddb", 1,
         "not a deepfaune result store", unchanged("src/TimelapseData.ddb")),
    Case("14 store prune on a Timelapse .ddb", timelapse_set,
         "store prune --store {src}/TimelapseData.ddb --older-than 1", 1, "not a deepfaune result store",
         unchanged("src/TimelapseData.ddb")),
    Case("14 --store at a photo", season, RUN.replace("--no-store", "--store {src}/IMG_0001.JPG"), 1,
         "not a deepfaune result store (not an SQLite file)", unchanged("src/IMG_0001.JPG")),
    Case("14 --store at an empty file is a new store", lambda src: (season(src), (src.parent / "s.sqlite").touch()),
         STORE_RUN, 0, "1 files, 1 sequences"),
    Case("17 a 1x20000 JPEG is that file's failure", elongated("jpeg"), RUN, 3,
         "IMG_0002.JPG: cannot be prepared for the models: image 1x20000 is too elongated to letterbox",
         failure_row("IMG_0002.JPG", "too elongated")),
    Case("17 a 65000x1 PNG is that file's failure", elongated("png"), RUN, 3, "65000x1 is too elongated",
         failure_row("IMG_0002.PNG", "too elongated")),
    Case("17 a model breaking its contract is the run's error, not each file's", season, RUN, 1,
         "output 'output0' has shape (1, 5, 9), expected [1, 7, anchors]", nothing_written,
         patch=detector_breaks_contract),
    Case("18 a person's label with a malformed date", store_with_label(at="yesterday-ish"), STORE_RUN, 1,
         "the label 'fox' of IMG_0001.JPG has a malformed date 'yesterday-ish'", nothing_written),
    Case("18 evaluate on a person's label with a malformed date", store_with_label(at="yesterday-ish"),
         "evaluate {src} --models-dir {models} --store {tmp}/s.sqlite --reviewed", 1,
         "the label 'fox' of IMG_0001.JPG has a malformed date 'yesterday-ish'"),
    Case("18 a person's label the model has no class for", store_with_label("unicorn"), STORE_RUN, 1,
         "the label 'unicorn' a person gave in `deepfaune review` is not a class of DeepFaune 1.4",
         nothing_written),
    Case("18 --threads 100000", season, RUN + " --threads 100000", 1,
         "threads must be between 1 and 256 (this computer has"),
    Case("18 --threads 0", season, RUN + " --threads 0", 1, "threads must be between 1 and 256"),
    Case("18 --threads -1", season, RUN + " --threads -1", 1, "got -1"),
    Case("18 --ddb-wait nan", timelapse_set, RUN + " --write-ddb --ddb-wait nan", 1,
         "--ddb-wait: expected a number of seconds >= 0, got 'nan'", unchanged("src/TimelapseData.ddb")),
    Case("18 --ddb-wait inf", timelapse_set, RUN + " --write-ddb --ddb-wait inf", 1,
         "got 'inf'", unchanged("src/TimelapseData.ddb")),
    Case("18 Ctrl-C with --no-store says nothing was kept", season, RUN, 130,
         "nothing was kept (no result store): the same command computes every file again", nothing_written,
         absent="stored", patch=interrupted_at_once),
    Case("20 a store in a folder that cannot be written", season,
         STORE_RUN.replace("{tmp}/s.sqlite", "{tmp}/ro/s.sqlite"), 1,
         "ro/s.sqlite: cannot be written: the folder", nothing_written, patch=not_writable("ro")),
    Case("20 a store whose folder cannot be made", season,
         STORE_RUN.replace("{tmp}/s.sqlite", "{src}/IMG_0001.JPG/s.sqlite"), 1,
         "run with --no-store (nothing kept between runs) or --store PATH on a writable disk", nothing_written),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_adv_store(case: Case, tmp_path: Path, standin_models: Path, capsys, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    case.build(src)
    before = {p.relative_to(tmp_path).as_posix(): _digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    if case.patch is not None:
        case.patch(monkeypatch, tmp_path)
    argv = case.argv.format(src=src, models=standin_models, tmp=tmp_path).split()
    code = main(argv)
    out = capsys.readouterr()
    said = out.out + out.err
    assert code == case.code, said
    assert case.message in said, said
    assert "Traceback" not in said
    if case.absent:
        assert case.absent not in said, said
    if case.check is not None:
        case.check(tmp_path, before)


def test_item17_a_backend_that_raises_fails_that_file_here_and_on_a_dask_worker(tmp_path: Path):
    """The per-file boundary holds for any backend: an exception while producing one file's result is that
    file's failure and the next files are computed (here and in a Dask shard); a DeepfauneError (a model
    missing or breaking its contract) is still the run's."""
    from deepfaune_plugin import distributed
    from deepfaune_plugin.api import RunSettings
    from deepfaune_plugin.errors import BackendError
    from deepfaune_plugin.per_file import predict_each

    class Raising:
        classes, info = None, {"backend": "raising"}

        def __init__(self, error: Exception):
            self.error = error

        def predict(self, items):
            for item in items:
                if item.relpath == "b.jpg":
                    raise self.error
                yield RawResult(item.relpath, 10, 10)

    items = [MediaItem(photo(tmp_path, name, seed=n), name, "") for n, name in enumerate(["a.jpg", "b.jpg", "c.jpg"])]
    got = [(item.relpath, raw.relpath, raw.failure) for item, raw in predict_each(Raising(ValueError("odd")), items)]
    assert got == [("a.jpg", "a.jpg", None), ("b.jpg", "b.jpg", "failed: ValueError: odd"), ("c.jpg", "c.jpg", None)]
    with pytest.raises(BackendError, match="contract"):
        list(predict_each(Raising(BackendError("model.onnx: contract")), items))

    settings = RunSettings(backend="raising")
    distributed._PREDICTORS[("raising", distributed.settings_key(settings))] = Raising(MemoryError("huge"))
    try:
        shard = distributed.run_shard(0, items, settings, "raising")
    finally:
        distributed._PREDICTORS.clear()
    assert [(r.relpath, r.failure) for r in shard.results] == [
        ("a.jpg", None), ("b.jpg", "failed: MemoryError: huge"), ("c.jpg", None)]


def test_item18_a_damaged_stored_output_is_computed_again(tmp_path: Path, standin_models: Path, capsys):
    """A stored model output whose date (or anything else) cannot be read back is no result: the file is
    computed again and its entry replaced, instead of every run, review and evaluate crashing on it."""
    src = tmp_path / "src"
    photo(src)
    argv = ["run", str(src), "--models-dir", str(standin_models), "--store", str(tmp_path / "s.sqlite"), "-q"]
    assert main(argv) == 0
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        (payload,) = db.execute("SELECT payload FROM raw").fetchone()
        db.execute("UPDATE raw SET payload=?", (payload[:-1] + ',"exif_date":"2024-13-45"}',))
    capsys.readouterr()
    assert main(argv) == 0
    assert "already computed" not in capsys.readouterr().err  # computed again, not reused
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert "2024-13-45" not in db.execute("SELECT payload FROM raw").fetchone()[0]


@pytest.mark.parametrize("template", ["AlbertaMetadataStandardsTemplate.tdb", "CamtrapDPTemplate.tdb"])
def test_item14_a_ddb_of_a_real_timelapse_template_given_as_store_is_left_byte_for_byte(
        template: str, tmp_path: Path, standin_models: Path, shared: Path, capsys):
    """The .ddb Timelapse makes from the real templates (and the template itself): refused by name, not one byte
    changed, no -wal/-shm beside it, whichever command is given it."""
    src = tmp_path / "set"
    photo(src)
    tdb = src / "TimelapseTemplate.tdb"
    tdb.write_bytes((shared / "data" / "timelapse" / template).read_bytes())
    ddb = create_ddb(tdb, src / "TimelapseData.ddb", [("IMG_0001.JPG", None)])
    for target in (ddb, tdb):
        before = _digest(target)
        for argv in (["run", str(src), "--models-dir", str(standin_models), "--store", str(target), "-q"],
                     ["store", "clear", "--store", str(target), "--yes"], ["store", "info", "--store", str(target)]):
            assert main(argv) == 1
            assert f"result store {target}: not a deepfaune result store" in capsys.readouterr().err
        assert _digest(target) == before
        assert sorted(p.name for p in src.iterdir()) == ["IMG_0001.JPG", "TimelapseData.ddb", "TimelapseTemplate.tdb"]
