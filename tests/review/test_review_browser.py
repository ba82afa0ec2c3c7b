"""Issue 18 must-show: the review web app in real headless Chromium, driven by the keyboard only: three
sequences corrected (one of them split), written back; the screenshots of docs/review.md come from here.

Skips when no Chromium is installed (CI installs Debian's `chromium`). Screenshots are copied to
$DEEPFAUNE_TEST_ARTIFACTS when that is set."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from deepfaune_plugin.cli import build_parser
from deepfaune_plugin.review.cli import run_review_command
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.types import MediaItem
from deepfaune_plugin.walk import iter_media
from cdp import Browser
from reviewkit import make_season, table

CHROMIUM = os.environ.get("DEEPFAUNE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def season(tmp_path):
    """(source, registry, result store, backend) of `reviewkit.make_season`, run once."""
    return make_season(tmp_path)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")


def keep(path: Path) -> None:
    target = os.environ.get("DEEPFAUNE_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


class Review:
    """`deepfaune review SOURCE` started as the command starts it, in a thread; `url` is the printed link."""

    def __init__(self, argv, registry):
        self.args = build_parser(registry).parse_args(argv)
        self.args.argv = argv
        self.ready = threading.Event()
        self.code = None
        self.thread = threading.Thread(target=self._run, args=(registry,), daemon=True)
        self.thread.start()
        assert self.ready.wait(60), "the review never started"

    def _run(self, registry):
        def ready(server):
            self.server = server
            self.ready.set()
        self.code = run_review_command(self.args, registry, ready=ready)

    def stop(self) -> int:
        self.server.server.shutdown()
        self.thread.join(30)
        return self.code


def test_three_sequences_corrected_with_the_keyboard_then_written_back(season, tmp_path):
    src, registry, store, backend = season
    review = Review(["review", str(src), "--backend", "logits", "--store", str(store), "--lang", "en",
                     "--reviewer", "Ana Lopez", "--no-report"], registry)
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=review.server.url)
        browser.wait_for("document.body.dataset.loaded === '1'")
        assert browser.evaluate("location.search") == ""  # the token left the address bar
        assert browser.evaluate("document.querySelectorAll('section.seq').length") == 4
        assert browser.wait_for("[...document.querySelectorAll('#queue img')].every(i => i.complete && i.naturalWidth > 0)")
        shot = browser.screenshot(tmp_path / "review-queue.png")
        keep(shot)

        browser.key("o")  # the picture enlarged, its box drawn; any key closes it
        browser.wait_for("!document.getElementById('viewer').hidden && document.getElementById('large').complete "
                         "&& document.getElementById('large').naturalWidth === 80")
        browser.key("Escape")
        assert browser.evaluate("document.getElementById('viewer').hidden") is True
        # 1. b (undefined): pick "badger" by typing its French name in the label search
        browser.key("/")
        browser.wait_for("!document.getElementById('picker').hidden")
        browser.type("blaireau")
        browser.wait_for("document.querySelector('#choices li.active')?.dataset.key === 'badger'")  # the server's answer
        keep(browser.screenshot(tmp_path / "review-search.png"))
        browser.key("Enter")
        browser.wait_for("document.getElementById('status').textContent.includes('badger')")
        # 2. c (near the threshold): accept DeepFaune's fox (the cursor moved on by itself)
        browser.key("Enter")
        browser.wait_for("document.getElementById('status').textContent === '1 file(s) of #3: fox'")
        # 3. e (fox, then wolf): split: the second picture is a wolf, the first a fox
        browser.key("ArrowRight")
        browser.key("x")
        browser.key("/")
        browser.type("wolf")
        browser.key("Enter")
        browser.wait_for("document.getElementById('status').textContent === '1 file(s) of #5: wolf'")
        browser.key("ArrowLeft")
        browser.key("x")
        browser.key("Enter")  # accept: DeepFaune says undefined for the sequence, so it refuses...
        browser.wait_for("document.getElementById('status').className === 'error'")
        browser.key("/")
        browser.type("fox")
        browser.key("Enter")
        browser.wait_for("document.querySelectorAll('section.seq.reviewed').length === 3")
        keep(browser.screenshot(tmp_path / "review-done.png"))

        browser.key("W")  # write back
        browser.wait_for("document.getElementById('status').textContent.startsWith('wrote ')")
        assert browser.problems() == []  # no script error, nothing refused by the page's content policy
    finally:
        browser.close()
        code = review.stop()
    assert code == 0 and backend.opened == 1  # everything came from the result store
    rows = table(src)
    assert {rel: (rows[rel]["prediction"], rows[rel]["predictionbase"]) for rel in
            ("b/IMG_0001.JPG", "c/IMG_0001.JPG", "e/IMG_0001.JPG", "e/IMG_0002.JPG", "f/IMG_0001.JPG")} == {
        "b/IMG_0001.JPG": ("badger", "badger"), "c/IMG_0001.JPG": ("fox", "fox"),
        "e/IMG_0001.JPG": ("fox", "fox"), "e/IMG_0002.JPG": ("wolf", "wolf"),
        "f/IMG_0001.JPG": ("fox", "fox")}  # f: nobody looked, DeepFaune's answer
    store_ = ResultStore(store)
    try:
        items = [MediaItem(path, rel, "") for path, rel in iter_media(src)]
        people = store_.human_labels(items)
    finally:
        store_.close()
    assert {rel: (h.key, h.reviewer) for rel, h in people.items()} == {
        "b/IMG_0001.JPG": ("badger", "Ana Lopez"), "c/IMG_0001.JPG": ("fox", "Ana Lopez"),
        "e/IMG_0001.JPG": ("fox", "Ana Lopez"), "e/IMG_0002.JPG": ("wolf", "Ana Lopez")}
