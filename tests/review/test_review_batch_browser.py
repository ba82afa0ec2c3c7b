"""Issue 33 must-show, in real headless Chromium: the label search (any language, scientific names, accents
aside, "no match") and many sequences labelled at once, driven by keyboard and mouse, one undo for the batch;
count, sex and behaviour typed in the page; two reviewers' labels side by side; then written back and the
folder table checked. Also the empty queue, which says why and how to see everything. The screenshots of
docs/review.md come from here ($DEEPFAUNE_TEST_ARTIFACTS)."""
from __future__ import annotations

import json

import pytest

from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.testing import StoredLogitsBackend, logits_for, registry_with, run_cli
from deepfaune_plugin.types import MediaItem
from deepfaune_plugin.walk import iter_media
from cdp import Browser
from reviewkit import jpeg, make_season, table
from test_review_browser import CHROMIUM, Review, keep

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
STATUS = "document.getElementById('status').textContent"


def status_is(browser: Browser, text: str) -> None:
    try:
        browser.wait_for(f"{STATUS} === {json.dumps(text)}")
    except TimeoutError:
        raise AssertionError(f"status {browser.evaluate(STATUS)!r}, not {text!r}") from None


SEQ_LABEL = "document.querySelector('section.seq[data-seq=\"{seq}\"] h2')?.firstChild.textContent"


def seq_label(browser: Browser, seq: int) -> str:
    return browser.evaluate(SEQ_LABEL.format(seq=seq))


def seq_labels_are(browser: Browser, seqs: tuple[int, ...], texts: list[str]) -> None:
    """Several sequences' headings once the page has drawn them again (see `seq_label_is`)."""
    js = "[" + ", ".join(SEQ_LABEL.format(seq=n) for n in seqs) + "]"
    try:
        browser.wait_for(f"JSON.stringify({js}) === {json.dumps(json.dumps(texts, separators=(',', ':'), ensure_ascii=False))}")
    except TimeoutError:
        raise AssertionError(f"{[seq_label(browser, n) for n in seqs]!r}, not {texts!r}") from None


def seq_label_is(browser: Browser, seq: int, text: str) -> None:
    """The sequence's heading once the page has drawn it again (the status line is set before the page is
    fetched and redrawn: reading the heading at once raced with that redraw on a loaded machine)."""
    try:
        browser.wait_for(f"{SEQ_LABEL.format(seq=seq)} === {json.dumps(text)}")
    except TimeoutError:
        raise AssertionError(f"#{seq} reads {seq_label(browser, seq)!r}, not {text!r}") from None


def cards(browser: Browser) -> list[str]:
    """The head's cards as the report draws its own (report.css: .cards > .card > .num + .lbl), one text each."""
    return browser.evaluate("[...document.querySelectorAll('.cards > .card')].map(c => c.className + ': ' + "
                            "c.querySelector('.num').textContent + ' ' + c.querySelector('.lbl').textContent)")


def test_search_and_a_batch_by_keyboard_and_mouse_then_written_back(tmp_path):
    src, registry, store, backend = make_season(tmp_path)
    people = ResultStore(store)  # another reviewer labelled b before: a wolf
    try:
        items = {rel: MediaItem(path, rel, "") for path, rel in iter_media(src)}
        people.set_human([(items["b/IMG_0001.JPG"], "wolf")], "Bob")
    finally:
        people.close()
    review = Review(["review", str(src), "--backend", "logits", "--store", str(store), "--lang", "en",
                     "--reviewer", "Ana Lopez", "--no-report"], registry)
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=review.server.url)
        browser.wait_for("document.body.dataset.loaded === '1'")
        # the queue: #2 b (Bob's wolf), #3 c (fox 0.85), #5 e (undefined), #6 f (1980)
        assert browser.evaluate("[...document.querySelectorAll('section.seq')].map(s => s.dataset.seq)") == [
            "2", "3", "5", "6"]
        assert cards(browser) == ["card review: 4 of 6 sequences to review", "card: 1 of 4 reviewed",
                                  "card: 1 of 4 done by Bob", "card: 0 files labelled differently by several reviewers"]

        # search by keyboard: German without its umlaut finds the chamois; then no match, said
        browser.key("/")
        browser.type("Gams")
        browser.wait_for("document.querySelector('#choices li.active')?.dataset.key === 'chamois'")
        assert browser.evaluate("document.querySelector('#choices li.active').textContent") == "chamois (Gämse)"
        browser.type("zz")
        browser.wait_for("document.querySelector('#choices li.nomatch')?.textContent === 'no match for “Gamszz”'")
        browser.key("Enter")
        status_is(browser, "no match for “Gamszz”")
        browser.key("Escape")
        # search by mouse: the French name with its accent, the choice clicked
        browser.key("/")
        browser.type("écureuil")
        browser.wait_for("document.querySelector('#choices li.active')?.dataset.key === 'squirrel'")
        keep(browser.screenshot(tmp_path / "review-search-any-language.png"))
        browser.click("#choices li.active")
        status_is(browser, "1 file(s) of #2: squirrel")
        seq_label_is(browser, 2, "#2 b · squirrel")
        # two reviewers' labels of b side by side, nothing overwritten
        browser.wait_for("document.querySelector('#conflicts td.by') !== null")
        assert browser.evaluate("[...document.querySelectorAll('#conflicts tr')].map(r => r.textContent)") == [
            "#2b/IMG_0001.JPGAna Lopez: squirrelBob: wolf"]
        assert browser.evaluate("document.querySelector('section.seq[data-seq=\"2\"] .conflict').textContent") == (
            "Ana Lopez: squirrelBob: wolf")
        assert cards(browser) == ["card review: 4 of 6 sequences to review", "card: 1 of 4 reviewed",
                                  "card: 1 of 4 done by Ana Lopez",
                                  "card warn: 1 files labelled differently by several reviewers"]

        # many at once, by keyboard: DeepFaune's score below 0.9 (b, c, e), labelled badger found by French name
        browser.key("b")
        browser.wait_for("document.activeElement.id === 'b-label'")
        browser.key("Tab")
        browser.key("Tab")
        assert browser.evaluate("document.activeElement.id") == "b-below"
        browser.type("0.9")
        browser.wait_for("document.getElementById('b-count').textContent === '3 sequence(s), 4 file(s) match'")
        for _ in range(6):  # station, from, to, reviewed, in the queue only, Label all…
            browser.key("Tab")
        assert browser.evaluate("document.activeElement.id") == "b-pick"
        browser.key("Enter")
        browser.wait_for("!document.getElementById('picker').hidden")
        browser.type("blaireau")
        browser.key("Enter")
        status_is(browser, "badger: 3 sequence(s), 4 file(s) labelled (U undoes the batch)")
        seq_labels_are(browser, (2, 3, 5, 6), [
            "#2 b · badger", "#3 c · badger", "#5 e · badger", "#6 f · fox"])
        keep(browser.screenshot(tmp_path / "review-batch.png"))
        # undo by mouse: the whole batch, b back to Ana's squirrel, c and e to no label of hers
        browser.click("#b-undo")
        status_is(browser, "undid the batch (badger): 4 file(s) as they were before it")
        seq_labels_are(browser, (2, 3, 5, 6), [
            "#2 b · squirrel", "#3 c · fox", "#5 e · undefined", "#6 f · fox"])
        # accept DeepFaune's label above a score, by mouse: a, d and f are outside the queue
        browser.click("#b-below")
        for _ in range(3):
            browser.key("Backspace")
        browser.click("#b-from")
        browser.type("0.95")
        browser.wait_for("document.getElementById('b-count').textContent === "
                         "'3 sequence(s), 3 file(s) match, 2 of them outside the queue'")
        browser.click("#b-accept")
        status_is(browser, "DeepFaune's label accepted: 3 sequence(s), 3 file(s) (U undoes the batch)")
        browser.key("Escape")
        assert browser.evaluate("document.getElementById('batch').hidden") is True

        # what ecologists record, by keyboard, for c (the cursor's sequence after b's label)
        browser.key("f")
        browser.wait_for("document.activeElement.id === 'fd-count'")
        assert browser.evaluate("document.getElementById('fields-for').textContent") == "1 file(s) of #3"
        browser.type("2")
        browser.key("Tab")
        browser.type("m")  # the select takes the option its typed letter begins: male
        browser.key("Tab")
        browser.key("Tab")
        browser.type("digging")
        for _ in range(3):  # individual, comment, count per species
            browser.key("Tab")
        assert browser.evaluate("document.activeElement.id") == "fd-species_counts"
        browser.type("renard:2;blaireau")  # a count per species, in French: read by the one label rule
        browser.key("Enter")
        status_is(browser, "fields of 1 file(s) of #3: count 2, sex male, behaviour digging, "
                           "species counts renard:2;blaireau")
        assert browser.evaluate("document.querySelector('section.seq[data-seq=\"3\"] .recorded').textContent") == (
            "count 2 · male · digging · fox 2 + badger 1")

        browser.key("W")
        browser.wait_for(f"{STATUS}.startsWith('wrote ')", timeout=120)
        assert browser.problems() == []
    finally:
        browser.close()
        code = review.stop()
    assert code == 0 and backend.opened == 1
    rows = table(src)
    assert {rel: (r["prediction"], r["reviewed"]) for rel, r in rows.items()} == {
        "a/IMG_0001.JPG": ("fox", "Ana Lopez"), "b/IMG_0001.JPG": ("squirrel", "Ana Lopez"),
        "c/IMG_0001.JPG": ("fox", "Ana Lopez"), "d/IMG_0001.JPG": ("empty", "Ana Lopez"),
        "e/IMG_0001.JPG": ("undefined", ""), "e/IMG_0002.JPG": ("undefined", ""),
        "f/IMG_0001.JPG": ("fox", "Ana Lopez")}
    c = rows["c/IMG_0001.JPG"]
    assert (c["count"], c["sex"], c["behaviour"], c["species_counts"]) == ("2", "male", "digging", "fox:2;badger:1")


def test_an_empty_queue_says_why_and_how_to_see_everything(tmp_path):
    src = tmp_path / "sure"
    (src / "cam").mkdir(parents=True)
    for i in range(2):
        jpeg(src / "cam" / f"IMG_000{i}.JPG", f"2024:05:0{i + 1} 10:00:00", 60 * i)
    backend = StoredLogitsBackend(default=logits_for("1.4", "fox", high=20.0))  # sure foxes: nothing to look at
    registry = registry_with(backends=[backend])
    common = ["--backend", "logits", "--store", str(tmp_path / "store.sqlite"), "--lang", "en", "--no-report"]
    assert run_cli(["run", src, *common, "-q"], registry).code == 0
    review = Review(["review", str(src), *common], registry)
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=review.server.url)
        browser.wait_for("document.body.dataset.loaded === '1'")
        said = browser.evaluate("document.getElementById('empty').textContent")
        assert said.startswith("Nothing to review: none of the 2 sequences of ")
        assert f"`deepfaune review {src} --all`" in said
        keep(browser.screenshot(tmp_path / "review-empty.png"))
        assert browser.problems() == []
    finally:
        browser.close()
        assert review.stop() == 0
