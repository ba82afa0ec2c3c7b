"""Issue 15 items 5 and 6: a Camtrap DP enrichment is all-or-nothing across its files, even under kill -9,
and two enrichments of one package never run at once.

The kill loop forks the test process once per file-system step of the writer (every open, write, fsync,
rename, removal...) and kills the child with SIGKILL just before step N; what the next run sees, once it
has taken the lock and finished or undone the journal, must be the whole old package or the whole new one.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from camtrapdp_helpers import make_package, run_on, tree_digest
from deepfaune_plugin.hooks.camtrapdp import host as camtrapdp_host
from deepfaune_plugin.hooks.camtrapdp.host import JOURNAL_NAME, LOCK_NAME, CamtrapDPHost, open_package
from deepfaune_plugin.transaction import LockedError, staged_path
from killpoints import FORK_ONLY, fork_run


def _package_files(root: Path) -> dict[str, str]:
    """The package as a reader sees it: every file but the backups and the pipeline's run record."""
    return {k: v for k, v in tree_digest(root).items() if not k.startswith(".deepfaune_backups")}


def _fixed_time(finished) -> datetime:
    return datetime(2024, 6, 2, 12, 0, 0, tzinfo=timezone.utc)


def _enrich(package: Path):
    def action():
        camtrapdp_host.classification_time = _fixed_time  # the same new bytes in every child
        run_on(package)

    return action


def _kill_loop(tmp_path: Path) -> tuple[int, int, int]:
    pristine = make_package(tmp_path / "pristine")
    old = _package_files(pristine)
    reference = tmp_path / "reference"
    shutil.copytree(pristine, reference)
    killed, total = fork_run(_enrich(reference), CamtrapDPHost, "_enrich", None)
    assert not killed
    new = _package_files(reference)
    assert new != old and new["observations.csv"] != old["observations.csv"]
    assert new["datapackage.json"] != old["datapackage.json"]
    package = tmp_path / "pkg"
    seen = {"old": 0, "new": 0}
    for kill_at in range(1, total + 1):
        shutil.rmtree(package, ignore_errors=True)
        shutil.copytree(pristine, package)
        assert fork_run(_enrich(package), CamtrapDPHost, "_enrich", kill_at)[0], f"step {kill_at} not reached"
        open_package(package, {}).release()  # what the next run does before it reads anything
        now = _package_files(package)
        state = "old" if now == old else "new" if now == new else None
        assert state is not None, f"killed before step {kill_at} of {total}: mixed package {now} vs {new}"
        seen[state] += 1
        assert not (package / LOCK_NAME).exists() and not (package / JOURNAL_NAME).exists()
        for name in ("observations.csv", "datapackage.json"):
            assert not staged_path(package / name).exists()
        backups = package / ".deepfaune_backups"
        for folder in (backups.iterdir() if backups.is_dir() else ()):
            assert not folder.name.startswith("."), f"half a backup left: {folder}"  # complete ones only
            assert tree_digest(folder) == {k: old[k] for k in ("observations.csv", "datapackage.json")}
    summary, _ = run_on(package)  # and the package stays usable: the next run brings it to the new state
    assert {"observations.csv", "datapackage.json"} >= {p.name for p in summary.written}
    return total, seen["old"], seen["new"]


@FORK_ONLY
def test_item15_5_enrichment_killed_at_every_step_is_wholly_old_or_new(tmp_path: Path):
    total, old, new = _kill_loop(tmp_path)  # about 30 s: one fork per step on a busy 2-core machine
    assert old + new == total and old > 5 and new > 5  # kills land on both sides of the commit point


def test_item15_5_a_planted_journal_never_writes_outside_the_package(tmp_path: Path):
    package = make_package(tmp_path / "pkg")
    outside = tmp_path / "outside.txt"
    (package / JOURNAL_NAME).write_text(json.dumps(
        {"format": 1, "state": "commit", "files": [{"target": "../outside.txt", "sha256": "0" * 64}]}))
    staged_path(outside).write_text("planted")
    before = tree_digest(package)
    from deepfaune_plugin.errors import DeepfauneError

    with pytest.raises(DeepfauneError, match=r"'../outside.txt' refused"):
        run_on(package)
    assert not outside.exists() and tree_digest(package) == before


# ---------------------------------------------------------------- item 6: one enrichment at a time

HOLDER = """
import sys
from deepfaune_plugin.transaction import FolderLock
lock = FolderLock(sys.argv[1], "the package")
print("held", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


@pytest.fixture
def holder(tmp_path: Path):
    """A live process that holds a package's lock until told to let go."""
    package = make_package(tmp_path / "pkg")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(package / LOCK_NAME)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield package, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_item15_6_second_enrichment_refuses_naming_the_lock(holder):
    package, proc = holder
    before = tree_digest(package)
    with pytest.raises(LockedError) as info:
        run_on(package)
    message = str(info.value)
    assert str(package / LOCK_NAME) in message and f"process {proc.pid}" in message
    assert "being written by another DeepFaune run" in message
    assert tree_digest(package) == before
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"
    summary, _ = run_on(package)
    assert package / "observations.csv" in summary.written


def test_item15_6_second_enrichment_waits_with_lock_wait(holder):
    package, proc = holder
    outcome: dict[str, object] = {}

    def second():
        try:
            outcome["summary"] = run_on(package, options={"lock_wait": "600"})[0]
        except Exception as err:  # reported below
            outcome["error"] = err

    thread = threading.Thread(target=second)
    thread.start()
    assert thread.is_alive()  # it cannot have finished: the lock is held
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"
    thread.join()
    assert "error" not in outcome, outcome.get("error")
    assert package / "observations.csv" in outcome["summary"].written


def test_item15_6_lock_of_a_killed_run_is_stale_by_pid(holder, capsys):
    package, proc = holder
    proc.kill()  # SIGKILL: the lock file stays, naming a pid that no longer runs
    proc.wait()
    assert json.loads((package / LOCK_NAME).read_text())["pid"] == proc.pid
    summary, logs = run_on(package)
    assert package / "observations.csv" in summary.written
    err = "\n".join(logs)  # the host says it through the run's log
    assert f"stale lock {package / LOCK_NAME} of process {proc.pid}" in err and "no longer running" in err
    assert not (package / LOCK_NAME).exists()


def test_item15_6_bad_lock_wait_is_refused(tmp_path: Path):
    package = make_package(tmp_path / "pkg")
    from deepfaune_plugin.errors import DeepfauneError

    with pytest.raises(DeepfauneError, match="--lock-wait: expected a finite number"):
        run_on(package, options={"lock_wait": "-1"})
    assert not (package / LOCK_NAME).exists()


def test_item15_6_without_system_locks_the_pid_decides(tmp_path: Path, monkeypatch):
    """On a file system without flock (some network mounts) a lock file is held while its pid runs."""
    import socket

    from deepfaune_plugin import transaction

    monkeypatch.setattr(transaction, "_try_lock", lambda fd: None)
    path = tmp_path / "x.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    try:
        path.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "since": "", "command": ""}))
        with pytest.raises(LockedError, match=rf"process {sleeper.pid} holds the lock file {path}"):
            transaction.FolderLock(path, "the data")
    finally:
        sleeper.kill()
        sleeper.wait()
    with transaction.FolderLock(path, "the data") as lock:  # the same file, its process gone
        assert lock.note == f"stale lock {path} of process {sleeper.pid} (no longer running) taken over"
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()
    path.write_text(json.dumps({"pid": 4242, "host": "field-laptop", "since": "", "command": ""}))
    with pytest.raises(LockedError, match="process 4242 on field-laptop holds .* remove the lock file"):
        transaction.FolderLock(path, "the data")  # another machine's pid cannot be checked: held


def test_item15_6_a_planted_lock_link_is_never_followed(tmp_path: Path):
    package = make_package(tmp_path / "pkg")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, package / LOCK_NAME)
    with pytest.raises(LockedError, match="a symbolic link where DeepFaune keeps its lock file"):
        run_on(package)
    assert victim.read_text() == "precious"
