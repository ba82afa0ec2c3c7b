"""Issue 32 item 5 (report): with --every-animal the review page draws every animal box with its own label and score
("too small" boxes marked) and lists each sequence's labels with MaxN and images; without it the page is as it was.

The browser part skips when no Chromium is installed; it drives Debian's headless Chromium over the DevTools pipe
(tests/review/cdp.py) and keeps a screenshot in the test's folder ($DEEPFAUNE_TEST_ARTIFACTS when set)."""
from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from deepfaune_plugin import animals as animals_module
from deepfaune_plugin.report.page import _asset
from deepfaune_plugin.testing import StoredLogitsBackend, logits_for, registry_with, run_cli
from imagegen import RED, make_jpeg

CHROMIUM = os.environ.get("DEEPFAUNE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
STATION = "<script>alert(1)</script>"[:8] + "x"  # "<script>x": a folder name that is markup


def sure(label: str) -> list[float]:
    return logits_for("1.4", label, high=20.0)


#: The testing backend's boxes (400 x 400 images): 40-px squares left to right from (10, 10), 45 px apart.
OUTCOMES = {"cam/a.jpg": [sure("fox"), sure("badger"), sure("fox")], "cam/b.jpg": [sure("fox")],
            f"{STATION}/c.jpg": [sure("wolf"), sure("wolf")], "cam2/d.jpg": "empty"}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i, (rel, outcome) in enumerate(OUTCOMES.items()):
        n = len(outcome) if isinstance(outcome, list) else 0
        make_jpeg(src / rel, 400, 400, date=datetime(2024, 5, 1, 22, 0, i),
                  blobs=[(RED, (10 + 45 * k, 10, 50 + 45 * k, 50)) for k in range(n)], seed=i)
    return src


def _run(src: Path, out: Path, *extra: str) -> Path:
    registry = registry_with(backends=[StoredLogitsBackend(OUTCOMES)])
    ran = run_cli(["run", src, "--backend", "logits", "--no-store", "-q", "-o", out / "deepfaune.csv", *extra],
                  registry)
    assert ran.code == 0, ran.stderr
    return out / "deepfaune-report.html"


def _data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    found = re.search(r'<script id="df-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


def _scripts_and_styles(page: Path) -> tuple[str, str]:
    text = page.read_text(encoding="utf-8")
    style = re.search(r"<style>\n(.*)\n</style>", text, re.S).group(1)
    script = text.rsplit("<script>\n", 1)[1].split("\n</script>", 1)[0]
    return style, script


def _without_times(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    return re.sub(r'"(started|finished|elapsed)":("[^"]*"|[0-9.]+)', r'"\1":-', text)


@pytest.fixture
def small_second_box(monkeypatch):
    """The second box of every file is too small to classify (the testing backend's boxes are all 40 px)."""
    real = animals_module.too_small
    monkeypatch.setattr(animals_module, "too_small", lambda box: box[0] > 50 and box[0] < 100 or real(box))


def test_the_page_of_a_default_run_is_as_it_was(source, tmp_path):
    first, again = _run(source, tmp_path / "one"), _run(source, tmp_path / "two")
    assert _without_times(first) == _without_times(again)  # the check below is worth something only if stable
    data = _data(first)
    assert "every_animal" not in data
    assert not any({"a", "ar"} & set(f) for s in data["sequences"] for f in s["files"])
    assert not any("sp" in s for s in data["sequences"])
    style, script = _scripts_and_styles(first)
    assert style == _asset("report.css") and script == _asset("report.js")  # none of animals.css/.js


def test_every_box_has_its_label_score_and_the_sequence_its_maxn(source, tmp_path, small_second_box):
    data = _data(_run(source, tmp_path / "every", "--every-animal"))
    assert data["every_animal"] == {"boxes": 6, "too_small": 2}
    files = {f["f"]: f for s in data["sequences"] for f in s["files"]}
    a = files["cam/a.jpg"]
    assert [(e["l"], e["s"], e.get("df", 0)) for e in a["a"]] == [("renard", 0.99, 1), ("too small", 0.0, 0),
                                                                  ("renard", 0.99, 0)]
    assert a["a"][1]["k"] == "too small" and a["ar"] == 1.0
    assert a["a"][2]["b"] == [0.25, 0.025, 0.1, 0.1]  # (100, 10, 140, 50) in 400 x 400
    assert files["cam2/d.jpg"]["a"] == []
    seqs = {s["files"][0]["f"]: s for s in data["sequences"]}
    cam = next(s for s in data["sequences"] if any(f["f"] == "cam/a.jpg" for f in s["files"]))
    assert [f["f"] for f in cam["files"]] == ["cam/a.jpg", "cam/b.jpg"]  # one sequence: a second apart
    assert cam["sp"] == [{"l": "renard", "k": "fox", "maxn": 2, "images": 2},  # two foxes in a, one in b
                         {"l": "too small", "k": "too small", "maxn": 1, "images": 1}]
    assert seqs[f"{STATION}/c.jpg"]["sp"] == [{"l": "loup", "k": "wolf", "maxn": 1, "images": 1},
                                             {"l": "too small", "k": "too small", "maxn": 1, "images": 1}]
    style, script = _scripts_and_styles(tmp_path / "every" / "deepfaune-report.html")
    assert style.endswith(_asset("animals.css")) and script.endswith(_asset("animals.js"))


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_the_boxes_and_labels_in_a_browser_as_text(source, tmp_path, small_second_box):
    from cdp import Browser

    page = _run(source, tmp_path / "every", "--every-animal")
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=page.as_uri())
        browser.wait_for("document.documentElement.dataset.ready === '1'")
        found = browser.evaluate("""(() => {
          const fig = document.querySelector('#sequences figure.th[data-file="cam/a.jpg"]');
          const boxes = [...fig.querySelectorAll('.abox')].map(b => [b.className, b.textContent]);
          const layer = fig.querySelector('.animals').getBoundingClientRect();
          const img = fig.querySelector('img').getBoundingClientRect();
          const station = [...document.querySelectorAll('#sequences article.seq')]
            .filter(a => a.dataset.station.startsWith('<script>'));
          return {boxes, layer: [layer.width, layer.height, layer.left - img.left, layer.top - img.top],
                  species: [...document.querySelectorAll('#sequences .species-list')].map(l => l.textContent),
                  station: station.map(a => a.querySelector('.head').textContent),
                  injected: document.querySelectorAll('#sequences script').length,
                  note: document.querySelector('.every-animal').textContent};
        })()""")
        assert found["boxes"] == [["abox deepfaune below", "renard 0.99"], ["abox small below", "too small"],
                                  ["abox below", "renard 0.99"]]
        assert found["layer"] == [123, 123, 20.5, 0]  # a square picture letterboxed in a 164 x 123 frame
        assert any("renard MaxN 2" in line for line in found["species"])
        assert any("loup MaxN 1 · 1 image" in line and "too small MaxN 1" in line for line in found["species"])
        assert found["station"] and "station <script>x" in found["station"][0] and found["injected"] == 0
        assert "6 boxes, 2 too small to classify" in found["note"]
        browser.evaluate("document.querySelector('#sequences h2').scrollIntoView()")
        browser.screenshot(tmp_path / "every-animal.png")
        # the full view: the same boxes, over the picture
        browser.evaluate("document.querySelector('#sequences figure.th[data-file=\"cam/a.jpg\"] a').click()")
        browser.wait_for("!!document.querySelector('#lightbox.open .frame .animals')")
        assert browser.evaluate("[...document.querySelectorAll('#lightbox .abox')].map(b => b.textContent)") == \
            ["renard 0.99", "too small", "renard 0.99"]
        browser.screenshot(tmp_path / "every-animal-full.png")
        assert not [e for e in browser.problems() if e.get("method") == "Runtime.exceptionThrown"]
    finally:
        browser.close()
    artifacts = os.environ.get("DEEPFAUNE_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        for name in ("every-animal.png", "every-animal-full.png"):
            shutil.copy(tmp_path / name, Path(artifacts) / name)
