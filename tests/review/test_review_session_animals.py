"""Issue 32 item 5 (review): the review session's JSON carries each file's animal boxes with their own labels
where the result store holds every box's outputs (a run with --every-animal); otherwise it is as it was."""
from __future__ import annotations

import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.pipeline import resolve_host
from deepfaune_plugin.review.session import ReviewSession
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.testing import StoredLogitsBackend, logits_for, registry_with, run_cli
from reviewkit import jpeg

OUTCOMES = {"a/IMG_0001.JPG": [logits_for("1.4", "fox", high=20.0), logits_for("1.4", "badger", high=20.0)],
            "b/IMG_0001.JPG": "empty"}


def _session(tmp_path, *extra) -> ReviewSession:
    src = tmp_path / "season"
    for i, station in enumerate("ab"):
        (src / station).mkdir(parents=True, exist_ok=True)
        jpeg(src / station / "IMG_0001.JPG", f"2024:05:0{i + 1} 10:00:00", 40 * i)
    backend = StoredLogitsBackend(OUTCOMES)
    registry = registry_with(backends=[backend])
    store = tmp_path / "results.sqlite"
    ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report", *extra], registry)
    assert ran.code == 0, ran.stderr
    return ReviewSession.open(src, resolve_host(registry, "auto", src), backend, RunSettings(backend="logits", lang="en"),
                              ResultStore(store, shared=True), {"output": None}, tmp_path / "thumbs", "Ana", True,
                              log=lambda msg: None)


def _files(session: ReviewSession) -> dict[str, dict]:
    page = session.page(0)
    return {f["f"]: f for s in page["sequences"] for f in s["files"]}


@pytest.mark.parametrize("every", [True, False])
def test_the_files_json_has_every_box_with_its_label_only_when_stored(tmp_path, every):
    session = _session(tmp_path, *(["--every-animal"] if every else []))
    try:
        files = _files(session)
    finally:
        session.store.close()
    if not every:
        assert not any("animals" in f for f in files.values())
        return
    # 40-px boxes from (10, 10) in 400 x 400, 45 px apart; labels in the review's language
    assert files["a/IMG_0001.JPG"]["animals"] == [
        {"b": [0.025, 0.025, 0.1, 0.1], "l": "fox", "k": "fox", "s": 0.99, "df": 1},
        {"b": [0.1375, 0.025, 0.1, 0.1], "l": "badger", "k": "badger", "s": 1.0}]
    assert files["b/IMG_0001.JPG"]["animals"] == []
