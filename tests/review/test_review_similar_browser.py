"""Issue 34.5 in real headless Chromium: `deepfaune review --order learn` shows the least sure sequence first; `s`
shows the pictures most like the current one (hand-made features, three clusters), a person keeps the same
animal's selected, labels them in one go (one undo), writes back, and the folder table says so."""
from __future__ import annotations

import pytest

from cdp import Browser
from reviewkit import table
from test_review_browser import CHROMIUM, Review, keep
from test_review_similar import clusters  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
STATUS = "document.getElementById('status').textContent"
SHOWN = "[...document.querySelectorAll('#similar-files figure')].map(f => f.dataset.file)"
CHOSEN = "[...document.querySelectorAll('#similar-files figure.selected')].map(f => f.dataset.file).sort()"


def test_similar_pictures_labelled_in_one_go_then_written_back(clusters, tmp_path):  # noqa: F811
    src, registry, store, backend = clusters
    review = Review(["review", str(src), "--backend", "logits", "--store", str(store), "--lang", "en", "--all",
                     "--order", "learn", "--reviewer", "Ana", "--no-report"], registry)
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=review.server.url)
        browser.wait_for("document.body.dataset.loaded === '1'")
        # DeepFaune least sure first (s1: fox 0.55, cluster A), then s8 (0.65); s9 has no features: last
        order = browser.evaluate("[...document.querySelectorAll('section.seq')].map(s => s.dataset.seq)")
        assert order[:2] == ["2", "9"] and order[-1] == "10"
        browser.wait_for("!document.getElementById('order-note').hidden")
        assert browser.evaluate("document.getElementById('order-note').textContent").endswith(
            "; 1 sequence(s) without stored features come last")
        browser.key("s")
        browser.wait_for("!document.getElementById('similar').hidden")
        shown = browser.evaluate(SHOWN)
        assert shown[0] == "s1/IMG_0001.JPG" and set(shown[1:3]) == {"s0/IMG_0001.JPG", "s2/IMG_0001.JPG"}
        assert len(shown) == 9 and "s9/IMG_0001.JPG" not in shown  # 8 others with features
        assert browser.evaluate("document.getElementById('queue').hidden") is True
        assert len(browser.evaluate(CHOSEN)) == 9  # all selected at first
        browser.key("A")  # none
        browser.wait_for(f"{CHOSEN}.length === 0")
        browser.key("x")  # the current picture itself, by keyboard
        browser.click('#similar-files figure[data-file="s0/IMG_0001.JPG"]')
        browser.click('#similar-files figure[data-file="s2/IMG_0001.JPG"]')
        assert browser.evaluate(CHOSEN) == ["s0/IMG_0001.JPG", "s1/IMG_0001.JPG", "s2/IMG_0001.JPG"]
        keep(browser.screenshot(tmp_path / "review-similar.png"))
        browser.key("/")
        browser.type("badger")
        browser.wait_for("document.querySelector('#choices li.active')?.dataset.key === 'badger'")
        browser.key("Enter")
        browser.wait_for(f"{STATUS} === 'badger: 3 similar picture(s) of 3 sequence(s) labelled (U undoes them)'")
        assert browser.evaluate("document.getElementById('similar').hidden") is True
        labels = browser.evaluate("[...document.querySelectorAll('section.seq.reviewed')].map(s => s.dataset.seq)"
                                  ".sort()")
        assert labels == ["1", "2", "3"]
        # one undo takes the three back; labelled again, then written back
        browser.key("U")
        browser.wait_for(f"{STATUS}.startsWith('undid the batch (badger): 3 file(s)')")
        assert browser.evaluate("document.querySelectorAll('section.seq.reviewed').length") == 0
        browser.key("s")
        browser.wait_for("!document.getElementById('similar').hidden")
        browser.key("A")
        browser.wait_for(f"{CHOSEN}.length === 0")
        for rel in ("s1", "s0", "s2"):
            browser.click(f'#similar-files figure[data-file="{rel}/IMG_0001.JPG"]')
        browser.key("/")
        browser.type("badger")
        browser.wait_for("document.querySelector('#choices li.active')?.dataset.key === 'badger'")
        browser.key("Enter")
        browser.wait_for(f"{STATUS}.startsWith('badger: 3 similar')")
        browser.key("W")
        browser.wait_for(f"{STATUS}.startsWith('wrote ')")
        assert browser.problems() == []
    finally:
        browser.close()
        code = review.stop()
    assert code == 0 and backend.opened == 1
    rows = table(src)
    assert {s: rows[f"{s}/IMG_0001.JPG"]["prediction"] for s in ("s0", "s1", "s2", "s3", "s6")} == {
        "s0": "badger", "s1": "badger", "s2": "badger", "s3": "undefined", "s6": "undefined"}
