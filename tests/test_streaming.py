"""A season in constant memory: media listed lazily, results decided and written a chunk of whole
sequences at a time, with outputs identical to a run that holds everything."""
from __future__ import annotations

import json
import random
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import deepfaune_plugin.pipeline as pipeline
from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.hooks.camtrapr.host import CamtrapRHost
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from deepfaune_plugin.sequences import chunks, sequence_blocks
from deepfaune_plugin.table import TableWriter
from deepfaune_plugin.types import MediaItem
from deepfaune_plugin.walk import MEDIA_SUFFIXES, iter_media, iter_media_blocks
from fakes import FakePredictor, registry_with_fake
from imagegen import make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")


def _rels(blocks) -> list[list[str]]:
    return [[rel for _, rel in block] for block in blocks]


def test_blocks_come_in_deepfaune_numbering_order(tmp_path: Path):
    # sorted paths: a/a.jpg, a/b/x.jpg, a/c.jpg, a/z.mp4 -- folder a's images are numbered first (a/a.jpg comes
    # first), then a/b's, then the video; a hidden folder and our own outputs are never listed
    _touch(tmp_path, "a/c.jpg", "a/a.jpg", "a/b/x.jpg", "a/z.mp4", "a-b.jpg", "a.b/y.jpg", ".hidden/h.jpg",
           "deepfaune_sorted/fox/s.jpg", "b/notes.txt")
    assert _rels(iter_media_blocks(tmp_path, MEDIA_SUFFIXES)) == [
        ["a-b.jpg"], ["a.b/y.jpg"], ["a/a.jpg", "a/c.jpg"], ["a/b/x.jpg"], ["a/z.mp4"],
    ]


def test_lazy_walk_lists_what_the_full_walk_lists_in_the_same_blocks(tmp_path: Path):
    rng = random.Random(1)  # a fixed jumble of names that sort around "/" and of folder depths
    names = ["a", "a.b", "a-b", "a_b", "ab", "b", "A", "z", "a b", "é"]
    for _ in range(300):
        parts = [rng.choice(names) for _ in range(rng.randint(0, 3))]
        try:
            _touch(tmp_path, "/".join(parts + [rng.choice(names) + rng.choice([".jpg", ".JPG", ".mp4", ".avi", ".png"])]))
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            pass
    flat = [MediaItem(path, rel, Path(rel).parent.as_posix()) for path, rel in iter_media(tmp_path, MEDIA_SUFFIXES)]
    want = [[item.relpath for item in block] for block in sequence_blocks(flat)]
    assert len(flat) > 200 and len(want) > 150
    assert _rels(iter_media_blocks(tmp_path, MEDIA_SUFFIXES)) == want


def test_chunks_keep_blocks_whole():
    blocks = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10], [11]]
    assert list(chunks(blocks, 4)) == [[1, 2, 3, 4], [5, 6, 7, 8, 9, 10], [11]]
    assert list(chunks(blocks, 1)) == blocks


@pytest.fixture
def season(tmp_path: Path) -> Path:
    """Three cards whose sequences straddle any chunk boundary, a sub-folder sorting between a folder's images."""
    root = tmp_path / "season"
    for card, offset in (("card1", 0), ("card2", 86400), ("card3", 2 * 86400)):
        for k, (name, seconds) in enumerate([("fox_1", 0), ("fox_2", 5), ("fox_3", 9), ("person_1", 600),
                                             ("empty_1", 1200), ("badger_1", 1800), ("badger_2", 1803)]):
            make_jpeg(root / card / f"{name}.jpg", 64, 48, date=T0 + timedelta(seconds=offset + seconds), seed=k)
    make_jpeg(root / "card1" / "deep" / "chamois_1.jpg", 64, 48, date=T0)  # sorts between card1's images
    (root / "card2" / "broken_1.jpg").write_bytes(b"not a jpeg")
    make_jpeg(root / "card3" / "undated_fox.jpg", 64, 48)
    return root


def _go(source: Path, out: Path, chunk: int, monkeypatch, host: str = "folder", registry=None, **kw):
    monkeypatch.setattr(pipeline, "CHUNK_FILES", chunk)
    return run(source, RunSettings(backend="fake", maxlag=10), host=host, output=out,
               registry=registry or registry_with_fake(), progress=False, log=lambda msg: None, **kw)


def _page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script id="df-data" type="application/json">(.*?)</script>', text, re.S).group(1))
    for key in ("started", "finished", "elapsed"):
        data.pop(key)
    return data


def test_a_run_in_chunks_writes_what_a_run_in_one_piece_writes(season: Path, tmp_path: Path, monkeypatch):
    whole = _go(season, tmp_path / "whole" / "out.csv", 10_000, monkeypatch)
    for chunk in (1, 4):
        parts = _go(season, tmp_path / f"c{chunk}" / "out.csv", chunk, monkeypatch)
        assert (tmp_path / f"c{chunk}" / "out.csv").read_bytes() == (tmp_path / "whole" / "out.csv").read_bytes()
        assert parts.results.decisions == whole.results.decisions
        assert _page_data(tmp_path / f"c{chunk}" / "out-report.html") == \
            _page_data(tmp_path / "whole" / "out-report.html")
    rows = [(d.relpath, d.seqnum) for d in whole.results.decisions]
    # numbered on from chunk to chunk: card1's fox 1-3, person, empty, badger 1-2 (4 sequences), card1/deep
    # (it sorts after card1/badger_*), then card2, whose broken file keeps a number of its own
    assert rows[:9] == [("card1/fox_1.jpg", 1), ("card1/fox_2.jpg", 1), ("card1/fox_3.jpg", 1),
                        ("card1/person_1.jpg", 2), ("card1/empty_1.jpg", 3), ("card1/badger_1.jpg", 4),
                        ("card1/badger_2.jpg", 4), ("card1/deep/chamois_1.jpg", 5), ("card2/fox_1.jpg", 6)]
    assert rows[-1] == ("card3/undated_fox.jpg", 15) and ("card2/broken_1.jpg", 10) in rows
    assert (whole.tally.files, whole.tally.sequences, len(whole.failures)) == (24, 14, 1)


def test_a_host_that_writes_at_the_end_gets_the_same_results_from_chunks(season: Path, tmp_path: Path, monkeypatch):
    registry = registry_with_fake()
    registry.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    _go(season, tmp_path / "whole" / "records.csv", 10_000, monkeypatch, host="camtrapr", registry=registry)
    _go(season, tmp_path / "c1" / "records.csv", 1, monkeypatch, host="camtrapr", registry=registry,
        keep_results=False)
    assert (tmp_path / "c1" / "records.csv").read_bytes() == (tmp_path / "whole" / "records.csv").read_bytes()


def test_results_are_written_while_the_season_is_still_being_listed_and_computed(season, tmp_path, monkeypatch):
    events: list[str] = []
    add, predict = TableWriter.add, FakePredictor.predict

    def spy_add(self, batch):
        events.append(f"write {len(batch.decisions)}")
        add(self, batch)

    def spy_predict(self, items):
        items = list(items)
        for item, raw in zip(items, predict(self, items)):
            events.append(f"compute {item.relpath}")
            yield raw

    monkeypatch.setattr(TableWriter, "add", spy_add)
    monkeypatch.setattr(FakePredictor, "predict", spy_predict)
    summary = _go(season, tmp_path / "out.csv", 7, monkeypatch, keep_results=False)
    # chunks of >= 7 files, whole folders: card1 (7), card1/deep + card2 (1 + 8), card3 (8); each is written
    # before the next is computed
    assert [e for e in events if e.startswith("write")] == ["write 7", "write 9", "write 8"]
    assert len(events) == 24 + 3
    assert events.index("write 7") == 7 and events.index("write 9") == 7 + 1 + 9
    assert events[8] == "compute card1/deep/chamois_1.jpg" and events[-2] == "compute card3/undated_fox.jpg"
    assert summary.results.decisions == [] and summary.results.raw == {} and summary.manifest.items == []
    assert (summary.tally.files, summary.tally.sequences) == (24, 14)
    assert summary.label_counts()["renard"] == 4  # one fox sequence per card, and card3's undated fox


def test_an_output_the_host_cannot_write_is_refused_before_any_model_runs(season, tmp_path, monkeypatch, capsys):
    from deepfaune_plugin.cli import main

    def no_model(self, settings):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("fakes.FakeBackend.open", no_model)
    assert main(["run", str(season), "--backend", "fake", "--output", str(tmp_path / "out.json"), "-q"],
                registry=registry_with_fake()) == 1
    err = capsys.readouterr().err
    assert "out.json: unsupported output type '.json'; use .csv or .xlsx" in err and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("name", ["out.csv", "out.xlsx"])
def test_chunked_tables_are_byte_identical_in_both_formats(season: Path, tmp_path: Path, monkeypatch, name):
    _go(season, tmp_path / "whole" / name, 10_000, monkeypatch)
    _go(season, tmp_path / "c2" / name, 2, monkeypatch, keep_results=False)
    assert (tmp_path / "c2" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_a_second_run_on_the_same_output_never_takes_the_first_runs_table_in_progress(tmp_path: Path):
    from deepfaune_plugin.atomic import StagedFile

    target = tmp_path / "deepfaune.csv"
    killed = tmp_path / ".deepfaune.csv.k1ll3d.part"  # a killed run's leftover: nobody holds it
    killed.write_text("half a table")
    first = StagedFile(target)
    assert not killed.exists()  # cleared by the next run that writes there
    with first.open_text() as out:
        out.write("filename\na.jpg\n")
    second = StagedFile(target)  # another run on the same output, while the first is still writing
    assert first.tmp.exists()
    with first.open_text() as out:
        out.write("b.jpg\n")
    first.commit()
    assert target.read_text() == "filename\na.jpg\nb.jpg\n"
    second.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deepfaune.csv"]


def test_a_table_whose_temporary_file_was_removed_is_never_published(tmp_path: Path):
    from deepfaune_plugin.atomic import StagedFile

    target = tmp_path / "deepfaune.csv"
    target.write_text("the previous table\n")
    staged = StagedFile(target)
    with staged.open_text() as out:
        out.write("filename\n")
        staged.tmp.unlink()  # another program cleaning the folder
        out.write("a.jpg\n")
    with pytest.raises(FileNotFoundError):
        staged.commit()
    assert target.read_text() == "the previous table\n"
