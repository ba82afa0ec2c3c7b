"""Issue 18 must-show: in real headless Chromium, three sequences corrected with the keyboard and written back,
for each host: the Timelapse .ddb (field and Reviewed flag), the Camtrap DP example package (human observations
beside DeepFaune's machine ones, still valid by frictionless), the camtrapR tree (record table and species
folders). The backend is the stored-logits stand-in: every answer is under the threshold, so every sequence is
in the queue, and the export runs no model."""
from __future__ import annotations

import csv
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deepfaune_plugin.testing import StoredLogitsBackend, registry_with, run_cli
from cdp import Browser
from imagegen import make_jpeg
from reviewkit import fox_at
from test_review_browser import CHROMIUM, Review, keep
from timelapse_build import Control, create_ddb, write_template

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
T0 = datetime(2024, 5, 3, 6, 0, 0)
REVIEWER = "Ana Lopez"


def status_is(browser: Browser, text: str) -> None:
    browser.wait_for(f"document.getElementById('status').textContent === {text!r}")


def _said(browser: Browser, seq_id: int, label: str) -> str:
    files = browser.evaluate(f"document.querySelectorAll('section.seq[data-seq=\"{seq_id}\"] figure').length")
    return f"{files} file(s) of #{seq_id}: {label}"


#: The keys a person presses for three sequences, and the label each gives: a label found by its French name,
#: one typed in English, and the key for empty.
ACTIONS = ((("/", *"oiseau", "Enter"), "bird"), (("/", *"bird", "Enter"), "bird"), (("e",), "empty"))


def drive(tmp_path: Path, argv: list[str], registry, ids, shot: str | None = None, actions=ACTIONS) -> int:
    review = Review(argv, registry)
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=review.server.url)
        browser.wait_for("document.body.dataset.loaded === '1'")
        browser.wait_for("[...document.querySelectorAll('#queue img')].every(i => i.complete && i.naturalWidth > 0)")
        if shot:
            keep(browser.screenshot(tmp_path / shot))
        for seq_id, (keys, label) in zip(ids, actions):
            for key in keys:
                browser.key(key)
            status_is(browser, _said(browser, seq_id, label))
        if shot:
            keep(browser.screenshot(tmp_path / shot.replace(".png", "-done.png")))
        browser.key("W")
        browser.wait_for("document.getElementById('status').textContent.startsWith('wrote ')", timeout=120)
        assert browser.problems() == []
    finally:
        browser.close()
        code = review.stop()
    return code


def test_camtrapdp_example_package_holds_the_corrections(tmp_path, shared):
    pytest.importorskip("frictionless")
    from camtrapdp_helpers import frictionless_validate, read_rows

    spec = shared / "data" / "camtrap-dp-1.0.2"
    package = tmp_path / "example"
    shutil.copytree(spec / "example", package)
    before = read_rows(package / "observations.csv")
    backend = StoredLogitsBackend(default=fox_at(0.72))  # undefined everywhere at 0.8
    registry = registry_with(backends=[backend])
    common = ["--backend", "logits", "--store", str(tmp_path / "store.sqlite"), "--lang", "en", "--maxlag", "0.5",
              "--no-report"]
    ran = run_cli(["run", package, *common], registry)
    assert ran.code == 3, ran.stderr  # 413 media given by URL are skipped (no network): said, exit 3
    machine = read_rows(package / "observations.csv")
    # ten local photos of a heron within six seconds: seven sequences with --maxlag 0.5 (1 s apart or more)
    # the third found by its German name: every photo is of a heron
    code = drive(tmp_path, ["review", str(package), *common, "--reviewer", REVIEWER], registry, (1, 2, 3),
                 shot="review-camtrapdp.png", actions=(*ACTIONS[:2], (("/", *"Vogel", "Enter"), "bird")))
    assert code == 0 and backend.opened == 1
    rows = read_rows(package / "observations.csv")
    human = [r for r in rows if r["classificationMethod"] == "human" and r["classifiedBy"] == REVIEWER]
    media = {r["mediaID"]: r["filePath"] for r in read_rows(package / "media.csv")}
    got = sorted((media[r["mediaID"]].rsplit("-", 1)[-1], r["observationType"], r["scientificName"]) for r in human)
    assert got == [("RCNX0031.JPG", "animal", "Aves"), ("RCNX0032.JPG", "animal", "Aves"),
                   ("RCNX0033.JPG", "animal", "Aves"), ("RCNX0034.JPG", "animal", "Aves")], got
    assert [r for r in rows if r not in human] == machine  # DeepFaune's rows and everyone else's, as they were
    assert all(r in rows for r in before)  # nothing the package had is gone
    report = frictionless_validate(package, spec, tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


def test_timelapse_ddb_holds_the_corrections(tmp_path):
    root = tmp_path / "set"
    files = [(f"cam1/IMG_{i:04d}.JPG", T0 + timedelta(minutes=20 * i)) for i in range(4)]
    for i, (rel, when) in enumerate(files):
        make_jpeg(root / rel, 160, 120, date=when, seed=i)
    tdb = write_template(root / "TimelapseTemplate.tdb", [
        Control("Species", "FixedChoice", choices=("fox", "bird", "empty", "undefined")),
        Control("Reviewed", "Flag", "false")])
    ddb = create_ddb(tdb, root / "TimelapseData.ddb", files)
    backend = StoredLogitsBackend(default=fox_at(0.72))
    registry = registry_with(backends=[backend])
    common = ["--backend", "logits", "--store", str(tmp_path / "store.sqlite"), "--lang", "en", "--write-ddb",
              "--field", "Species", "--no-report"]
    ran = run_cli(["run", root, *common], registry)
    assert ran.code == 0, ran.stderr
    code = drive(tmp_path, ["review", str(root), *common, "--reviewer", REVIEWER], registry, (1, 2, 3),
                 shot="review-timelapse.png")
    assert code == 0 and backend.opened == 1
    conn = sqlite3.connect(ddb)
    try:
        got = dict((f, (s, r)) for f, s, r in conn.execute("SELECT File, Species, Reviewed FROM DataTable"))
    finally:
        conn.close()
    assert got == {"IMG_0000.JPG": ("bird", "true"), "IMG_0001.JPG": ("bird", "true"),
                   "IMG_0002.JPG": ("empty", "true"), "IMG_0003.JPG": ("undefined", "false")}
    assert len(list((root / "Backups").iterdir())) >= 1  # the .ddb was backed up before each write


def test_camtrapr_tree_holds_the_corrections(tmp_path):
    tree = tmp_path / "inDir"
    for i in range(4):
        make_jpeg(tree / "StationA" / f"IMG_{i:04d}.JPG", 64, 48, date=T0 + timedelta(minutes=40 * i), seed=i)
    backend = StoredLogitsBackend(default=fox_at(0.72))
    registry = registry_with(backends=[backend])
    species = tmp_path / "species"
    common = ["--backend", "logits", "--store", str(tmp_path / "store.sqlite"), "--lang", "en", "--host", "camtrapr",
              "--include", "undefined,empty", "--species-folders", str(species), "--no-report"]
    ran = run_cli(["run", tree, *common], registry)
    assert ran.code == 0, ran.stderr
    assert sorted(p.name for p in (species / "StationA" / "undefined").iterdir()) == [
        f"IMG_{i:04d}.JPG" for i in range(4)]
    code = drive(tmp_path, ["review", str(tree), *common, "--reviewer", REVIEWER], registry, (1, 2, 3))
    assert code == 0 and backend.opened == 1
    with open(tree / "deepfaune_recordTable.csv", encoding="utf-8", newline="") as fh:
        table = {r["FileName"]: r["Species"] for r in csv.DictReader(fh)}
    assert table == {"IMG_0000.JPG": "bird", "IMG_0001.JPG": "bird", "IMG_0002.JPG": "empty",
                     "IMG_0003.JPG": "undefined"}
    assert {p.parent.name: sorted(x.name for x in p.parent.iterdir()) for p in species.glob("StationA/*/*")} == {
        "bird": ["IMG_0000.JPG", "IMG_0001.JPG"], "empty": ["IMG_0002.JPG"], "undefined": ["IMG_0003.JPG"]}
