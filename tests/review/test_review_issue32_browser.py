"""Issue 32 in real headless Chromium: every animal box drawn with its own label and score (DeepFaune's box
distinct), and a place `--drop-repeats` set aside restored with a click, then written back: the folder's result
table holds that box's animal again. The screenshots of docs/review.md's sections on them come from here."""
from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest

from deepfaune_plugin.testing import StoredLogitsBackend, logits_for, registry_with, run_cli
from cdp import Browser
from imagegen import make_jpeg
from test_repeats import BoxesBackend, _station
from test_review_browser import CHROMIUM, Review, keep

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")


def _rows(src: Path) -> dict[str, dict]:
    with open(src / "deepfaune.csv", newline="", encoding="utf-8") as fh:
        return {row["filename"]: row for row in csv.DictReader(fh)}


def _open(review: Review, tmp_path: Path) -> Browser:
    browser = Browser(CHROMIUM, tmp_path / "profile")
    browser.send("Page.navigate", url=review.server.url)
    browser.wait_for("document.body.dataset.loaded === '1'")
    return browser


def test_every_animal_box_shows_its_own_label_in_the_thumbnails_and_enlarged(tmp_path):
    src = tmp_path / "season"
    for i, station in enumerate("ab"):
        (src / station).mkdir(parents=True)
        make_jpeg(src / station / "IMG_0001.JPG", 400, 400, date=datetime(2024, 5, i + 1, 10), seed=i,
                  blobs=[((170, 90, 40), (10, 10, 50, 50)), ((60, 60, 60), (55, 10, 95, 50))])  # a fox, a badger
    backend = StoredLogitsBackend({"a/IMG_0001.JPG": [logits_for("1.4", "fox", high=20.0),
                                                      logits_for("1.4", "badger", high=20.0)],
                                   "b/IMG_0001.JPG": "empty"})
    registry = registry_with(backends=[backend])
    common = ["--backend", "logits", "--store", str(tmp_path / "store.sqlite"), "--lang", "en", "--no-report"]
    assert run_cli(["run", src, *common, "--every-animal"], registry).code == 0
    review = Review(["review", str(src), *common, "--all", "--reviewer", "Ana"], registry)
    browser = _open(review, tmp_path)
    try:
        labels = browser.evaluate("[...document.querySelectorAll('#queue figure .abox')].map(b => "
                                  "[b.closest('figure').dataset.file, b.textContent, b.classList.contains('deepfaune')])")
        assert labels == [["a/IMG_0001.JPG", "fox 0.99", True], ["a/IMG_0001.JPG", "badger 1.00", False]]
        browser.wait_for("[...document.querySelectorAll('#queue img')].every(i => i.complete && i.naturalWidth > 0)")
        keep(browser.screenshot(tmp_path / "review-every-animal-thumbs.png"))
        browser.key("o")
        browser.wait_for("!document.getElementById('viewer').hidden && document.getElementById('large').complete "
                         "&& document.getElementById('large').naturalWidth > 0")
        assert browser.evaluate("[...document.querySelectorAll('#frame .abox')].map(b => b.title)") == [
            "fox 0.99 (DeepFaune's box for the image)", "badger 1.00"]
        keep(browser.screenshot(tmp_path / "review-every-animal.png"))
        assert browser.problems() == []
    finally:
        browser.close()
        review.stop()


def test_a_place_restored_with_a_click_counts_again_in_the_written_table(tmp_path):
    src = tmp_path / "src"
    backend = BoxesBackend(_station(src, 12, range(3, 8)))
    registry = registry_with(backends=[backend])
    common = ["--backend", "boxes", "--store", str(tmp_path / "store.sqlite"), "--lang", "en", "--no-report"]
    assert run_cli(["run", src, *common, "--drop-repeats", "--repeat-min-images", "10"], registry).code == 0
    assert _rows(src)["st1/img00.jpg"]["predictionbase"] == "empty"
    review = Review(["review", str(src), *common, "--reviewer", "Ana"], registry)  # --drop-repeats: the record's
    browser = _open(review, tmp_path)
    try:
        browser.wait_for("document.querySelectorAll('#repeats figure.repeat').length === 1")
        assert browser.evaluate("document.querySelector('#repeats figure.repeat').dataset.n") == "12"
        assert browser.evaluate("document.querySelector('#repeats summary').textContent") == (
            "Set aside as repeats: 1 place(s), 1 not decided yet")
        browser.click("#repeats figure.repeat .r-restore")
        browser.wait_for("document.querySelector('#repeats figure.repeat.restore') !== null")
        browser.wait_for("document.querySelector('#repeats img').complete")
        keep(browser.screenshot(tmp_path / "review-repeats.png"))
        browser.key("W")
        browser.wait_for("document.getElementById('status').textContent.startsWith('wrote ')", timeout=120)
        assert browser.problems() == []
    finally:
        browser.close()
        assert review.stop() == 0
    rows = _rows(src)
    for k in range(12):  # the "branch" is DeepFaune's box again, with its label, and no warning
        row = rows[f"st1/img{k:02d}.jpg"]
        assert (row["predictionbase"], row["warning"], row["bbox_x"]) == ("wild boar", "", "0.125")
