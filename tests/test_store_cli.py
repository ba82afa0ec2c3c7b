"""`deepfaune store info|prune|clear`, and the promise that tests (and runs told where the cache is) never touch
the user's real cache (issue 16 item 1)."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from deepfaune_plugin.cli import main
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.types import MediaItem, RawResult
from imagegen import make_jpeg

DEEPFAUNE = str(Path(sys.executable).parent / "deepfaune")


def _user_store() -> Path:
    return Path(os.environ["XDG_CACHE_HOME"]) / "deepfaune-plugin" / "results" / "store.sqlite"


def _fill(tmp_path: Path, entries: dict[str, int]) -> None:
    """The user's store with `entries[fingerprint]` results, each a distinct small file."""
    store = ResultStore(_user_store())
    n = 0
    for fingerprint, count in entries.items():
        batch = []
        for _ in range(count):
            path = make_jpeg(tmp_path / "img" / f"{n}.jpg", width=32, height=24, seed=n)
            batch.append((MediaItem(path, f"{n}.jpg", ""), RawResult(f"{n}.jpg", 32, 24)))
            n += 1
        store.save(fingerprint, batch)
    store.close()


def _count(fingerprint: str | None = None) -> int:
    with sqlite3.connect(_user_store()) as db:
        if fingerprint is None:
            return db.execute("SELECT count(*) FROM raw").fetchone()[0]
        return db.execute("SELECT count(*) FROM raw WHERE fingerprint=?", (fingerprint,)).fetchone()[0]


def test_item16_1_store_info_shows_location_size_entries_fingerprints(tmp_path: Path, capsys):
    assert main(["store", "info"]) == 0
    assert f"result store: {_user_store()} (none yet)" in capsys.readouterr().out
    assert not _user_store().exists()  # looking creates nothing
    _fill(tmp_path, {"a" * 64: 3, "b" * 64: 2})
    assert main(["store", "info"]) == 0
    out = capsys.readouterr().out
    assert f"result store: {_user_store()}\n" in out and "5 entries" in out
    assert f"models {'a' * 16}  3 entries" in out and f"models {'b' * 16}  2 entries" in out


def test_item16_1_store_prune_by_models_age_and_size(tmp_path: Path, capsys):
    _fill(tmp_path, {"a" * 64: 3, "b" * 64: 2})
    assert main(["store", "prune"]) == 1  # nothing said: nothing dropped
    assert "say what to drop" in capsys.readouterr().err and _count() == 5
    assert main(["store", "prune", "--keep", "aaaa"]) == 0
    assert "2 entries dropped; 3 left" in capsys.readouterr().out
    assert (_count("a" * 64), _count("b" * 64)) == (3, 0)
    with sqlite3.connect(_user_store()) as db:  # one entry stored 40 days ago
        db.execute("UPDATE raw SET stored_at=? WHERE rowid=(SELECT min(rowid) FROM raw)", (time.time() - 40 * 86400,))
    assert main(["store", "prune", "--older-than", "30"]) == 0 and _count() == 2
    capsys.readouterr()
    with sqlite3.connect(_user_store()) as db:
        db.execute("UPDATE raw SET stored_at=stored_at-rowid")  # distinct ages: the oldest go first
        length = db.execute("SELECT max(length(payload)) FROM raw").fetchone()[0]
    assert main(["store", "prune", "--max-size", str(length)]) == 0 and _count() == 1
    assert "1 entries dropped; 1 left" in capsys.readouterr().out


def test_item16_1_store_clear_asks_unless_yes(tmp_path: Path):
    _fill(tmp_path, {"a" * 64: 1})
    res = subprocess.run([DEEPFAUNE, "store", "clear"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert res.returncode == 1 and "add --yes" in res.stderr and _user_store().exists()
    res = subprocess.run([DEEPFAUNE, "store", "clear", "--yes"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"deleted {_user_store()}" in res.stdout
    assert not list(_user_store().parent.iterdir())  # the WAL files went with it


def test_item16_1_nothing_is_written_into_the_real_cache(tmp_path: Path, standin_models: Path):
    """Every command that uses the cache honours XDG_CACHE_HOME: with HOME pointing at an empty folder, its
    .cache stays absent; this is what keeps the suite (conftest sets XDG_CACHE_HOME) out of the user's cache."""
    home, cache = tmp_path / "home", tmp_path / "xdg"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(cache))
    env.pop("DEEPFAUNE_MODELS", None)
    make_jpeg(tmp_path / "src" / "a.jpg", width=64, height=48, seed=1)
    for argv in (["run", str(tmp_path / "src"), "--models-dir", str(standin_models), "-q", "-o",
                  str(tmp_path / "out.csv")],
                 ["store", "info"], ["store", "prune", "--older-than", "1"], ["models", "list"]):
        res = subprocess.run([DEEPFAUNE, *argv], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert res.returncode == 0, (argv, res.stderr)
    assert not (home / ".cache").exists()
    assert (cache / "deepfaune-plugin" / "results" / "store.sqlite").exists()


def test_suite_cache_is_private():
    """conftest's cache is a temporary folder, never the user's ~/.cache."""
    real = Path.home() / ".cache"
    assert not _user_store().is_relative_to(real)
