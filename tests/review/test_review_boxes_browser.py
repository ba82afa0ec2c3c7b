"""Issue 33.3 must-show: in real headless Chromium, boxes drawn with the mouse, moved by keyboard, one deleted,
written back; then the Timelapse .ddb's detections and the folder's result table hold the person's boxes (and
a person box is what `--blur-humans` blurs). The screenshot of docs/review.md's box editor comes from here."""
from __future__ import annotations

import csv
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
KEYS = {"Tab": 9, "Delete": 46, "ArrowRight": 39, "ArrowDown": 40, "Escape": 27}


def press(browser: Browser, key: str, shift: bool = False) -> None:
    """A key without text (Tab, Delete, the arrows), as a person presses it."""
    mods = 8 if shift else 0
    browser.send("Input.dispatchKeyEvent", type="rawKeyDown", key=key, code=key, windowsVirtualKeyCode=KEYS[key],
                 modifiers=mods)
    browser.send("Input.dispatchKeyEvent", type="keyUp", key=key, code=key, windowsVirtualKeyCode=KEYS[key],
                 modifiers=mods)


def drag(browser: Browser, start: tuple[float, float], end: tuple[float, float]) -> None:
    """The mouse pressed at `start`, moved to `end` in steps, released (fractions of the enlarged picture)."""
    r = browser.evaluate("(() => { const r = document.getElementById('boxlayer').getBoundingClientRect(); "
                         "return [r.left, r.top, r.width, r.height]; })()")
    at = lambda p: {"x": r[0] + p[0] * r[2], "y": r[1] + p[1] * r[3]}  # noqa: E731
    browser.send("Input.dispatchMouseEvent", type="mousePressed", button="left", clickCount=1, **at(start))
    for i in range(1, 6):
        p = (start[0] + (end[0] - start[0]) * i / 5, start[1] + (end[1] - start[1]) * i / 5)
        browser.send("Input.dispatchMouseEvent", type="mouseMoved", button="left", **at(p))
    browser.send("Input.dispatchMouseEvent", type="mouseReleased", button="left", clickCount=1, **at(end))


def boxes_shown(browser: Browser) -> list:
    return browser.evaluate("[...document.querySelectorAll('#boxlayer .ebox')].map(b => [b.classList[1], "
                            "parseFloat(b.style.left), parseFloat(b.style.top), parseFloat(b.style.width), "
                            "parseFloat(b.style.height)].map(v => typeof v === 'number' ? Math.round(v) : v))")


def edit_boxes(browser: Browser, tmp_path: Path, shot: str | None) -> None:
    """On the first picture: a person drawn by mouse, the detector's animal box moved 5% right by keyboard, a
    false box drawn and deleted; saved, then written back."""
    browser.key("o")
    browser.wait_for("!document.getElementById('viewer').hidden && document.getElementById('large').complete "
                     "&& document.getElementById('large').naturalWidth > 0")
    assert boxes_shown(browser) == [["animal", 20, 20, 60, 60]]  # the detector's box
    drag(browser, (0.05, 0.1), (0.25, 0.9))  # a person the detector missed
    browser.key("p")
    press(browser, "Tab")  # the first box: the detector's animal
    for _ in range(5):
        press(browser, "ArrowRight")
    drag(browser, (0.85, 0.05), (0.95, 0.2))  # a false box...
    press(browser, "Delete")  # ...deleted
    assert boxes_shown(browser) == [["animal", 25, 20, 60, 60], ["person", 5, 10, 20, 80]]
    browser.key("s")
    browser.wait_for("document.getElementById('status').textContent.endsWith(': 2 box(es) saved')")
    press(browser, "Tab")
    if shot:
        keep(browser.screenshot(tmp_path / shot))
    assert browser.evaluate("document.querySelector('#queue figure.pic img').src").endswith("?v=1")
    browser.key("Escape")
    browser.key("Escape")
    assert browser.evaluate("document.getElementById('viewer').hidden") is True
    browser.key("W")
    browser.wait_for("document.getElementById('status').textContent.startsWith('wrote ')", timeout=120)
    assert browser.problems() == []


def drive(tmp_path: Path, argv: list[str], registry, shot: str | None = None) -> int:
    review = Review(argv, registry)
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=review.server.url)
        browser.wait_for("document.body.dataset.loaded === '1'")
        assert browser.evaluate("document.title").startswith("DeepFaune review — ")
        edit_boxes(browser, tmp_path, shot)
    finally:
        browser.close()
        code = review.stop()
    return code


def test_boxes_drawn_in_the_browser_reach_the_timelapse_ddb(tmp_path):
    root = tmp_path / "set"
    files = [(f"cam1/IMG_{i:04d}.JPG", T0 + timedelta(minutes=20 * i)) for i in range(2)]
    for i, (rel, when) in enumerate(files):
        make_jpeg(root / rel, 160, 120, date=when, seed=i)
    tdb = write_template(root / "TimelapseTemplate.tdb", [
        Control("Species", "FixedChoice", choices=("fox", "bird", "empty", "undefined"))])
    ddb = create_ddb(tdb, root / "TimelapseData.ddb", files)
    backend = StoredLogitsBackend(default=fox_at(0.72))
    registry = registry_with(backends=[backend])
    common = ["--backend", "logits", "--store", str(tmp_path / "store.sqlite"), "--lang", "en", "--write-ddb",
              "--field", "Species", "--no-report"]
    assert run_cli(["run", root, *common], registry).code == 0
    code = drive(tmp_path, ["review", str(root), *common, "--reviewer", "Ana Lopez"], registry,
                 shot="review-boxes.png")
    assert code == 0 and backend.opened == 1
    conn = sqlite3.connect(ddb)
    try:
        got = sorted(conn.execute("SELECT d.File, t.category, t.conf, t.bbox FROM Detections t "
                                  "JOIN DataTable d ON d.Id = t.Id"))
    finally:
        conn.close()
    # the person's boxes (confidence 1: a person's) on the first picture, the detector's on the second; Timelapse's
    # own shift of every box (-0.002 each side) included; the drawn person box within a screen pixel or two
    assert [(f, c, conf) for f, c, conf, _ in got] == [("IMG_0000.JPG", 1, 1.0), ("IMG_0000.JPG", 2, 1.0),
                                                        ("IMG_0001.JPG", 1, 0.95)], got
    assert got[0][3] == "0.248, 0.198, 0.604, 0.604" and got[2][3] == "0.198, 0.198, 0.604, 0.604", got
    drawn = [float(v) for v in got[1][3].split(", ")]
    assert drawn == pytest.approx([0.048, 0.098, 0.204, 0.804], abs=0.004), got


def test_boxes_drawn_in_the_browser_reach_the_result_table(tmp_path):
    root = tmp_path / "set"
    for i in range(2):
        make_jpeg(root / f"IMG_{i:04d}.JPG", 160, 120, date=T0 + timedelta(minutes=20 * i), seed=i)
    backend = StoredLogitsBackend(default=fox_at(0.72))
    registry = registry_with(backends=[backend])
    common = ["--backend", "logits", "--store", str(tmp_path / "store.sqlite"), "--lang", "en", "--no-report"]
    assert run_cli(["run", root, *common], registry).code == 0
    before = (root / "deepfaune.csv").read_bytes()
    code = drive(tmp_path, ["review", str(root), *common, "--reviewer", "Ana Lopez"], registry)
    assert code == 0
    with open(root / "deepfaune.csv", newline="", encoding="utf-8") as fh:
        rows = {r["filename"]: r for r in csv.DictReader(fh)}
    first, second = rows["IMG_0000.JPG"], rows["IMG_0001.JPG"]
    assert [first[c] for c in ("bbox_x", "bbox_y", "bbox_width", "bbox_height", "bbox_conf", "detector",
                               "count", "humancount")] == ["0.25", "0.2", "0.6", "0.6", "1.0", "human", "1", "1"]
    person = [float(v) for v in first["person_boxes"].split(",")]  # drawn: within a screen pixel or two
    assert person == pytest.approx([0.05, 0.1, 0.2, 0.8], abs=0.004), first["person_boxes"]
    assert [second[c] for c in ("bbox_x", "bbox_conf", "detector", "person_boxes")] == ["0.2", "0.95", "DF", ""]
    assert before.splitlines()[2:] == (root / "deepfaune.csv").read_bytes().splitlines()[2:]  # the rest as it was
