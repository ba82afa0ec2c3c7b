"""The review page in a real browser (Debian's headless Chromium), with every network route closed.

Skips when no Chromium is installed (CI installs Debian's `chromium` package).  The screenshot is
kept in the test's temporary folder, and copied to $DEEPFAUNE_TEST_ARTIFACTS when that is set.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from deepfaune_plugin.report import report_dir, write_report, write_run_record
from test_report import build_run, csv_numbers

CHROMIUM = os.environ.get("DEEPFAUNE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    # no network at all: every proxied request goes to a closed port, every host name fails to resolve
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=4000", "--enable-logging=stderr", "--log-level=0",
]


def chromium(url: str, tmp: Path, *args: str) -> str:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    profile.mkdir()
    res = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url],
                         capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no script error, no request refused by the page's content policy
    return res.stdout


class Dom(HTMLParser):
    """Elements of a DOM dump as (tag, attrs, text inside), enough to read numbers and data-* attributes."""

    VOID = {"img", "br", "meta", "input", "link", "hr", "source"}

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[list] = []
        self._open: list[list] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = [tag, dict(attrs), ""]
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element[2] += data

    def by_id(self, ident: str) -> str:
        (element,) = [e for e in self.elements if e[1].get("id") == ident]
        return element[2].strip()

    def having(self, attr: str) -> list[dict]:
        return [e[1] for e in self.elements if attr in e[1]]


@pytest.fixture
def page(tmp_path: Path) -> Path:
    summary = build_run(tmp_path)
    out = report_dir(summary)
    write_run_record(summary, out)
    return write_report(summary, out)


def test_summary_numbers_equal_the_csv(page: Path, tmp_path: Path):
    expected = csv_numbers(page.parent / "deepfaune.csv")
    dom = Dom(chromium(page.as_uri(), tmp_path, "--dump-dom"))
    assert dom.elements[0][1].get("data-ready") == "1"  # the script ran to its end
    assert int(dom.by_id("n-files")) == expected["files"] == 10
    assert int(dom.by_id("n-sequences")) == expected["sequences"] == 7
    assert int(dom.by_id("n-failed")) == expected["failed"] == 1
    assert int(dom.by_id("n-review")) == 2
    bars = {a["data-label"]: int(a["data-count"]) for a in dom.having("data-count") if "data-label" in a}
    assert bars == expected["labels"]
    # unfiltered: every sequence once in the list by label, the two to review once more in the queue
    seqs = [a for a in dom.having("data-seq")]
    assert len({a["data-seq"] for a in seqs}) == 7 and len(seqs) == 7 + 2
    assert "cam2/broken_1.jpg" in dom.by_id("failure-table")
    # thumbnails and links are files beside the page; none failed to load
    srcs = [a["src"] for a in dom.having("src")]
    assert len(srcs) == 9 + 2 and all(s.startswith(".deepfaune-thumbs/t-") for s in srcs)
    assert not dom.having("data-broken")
    links = [a["href"] for a in dom.having("href")]
    assert links and not [h for h in links if re.match(r"[a-z]+:", h)]


@pytest.mark.parametrize("label, in_review", [("renard", 0), ("indéfini", 1)])
def test_filtering_by_label_shows_only_that_label(page: Path, tmp_path: Path, label: str, in_review: int):
    expected = csv_numbers(page.parent / "deepfaune.csv")["labels"][label]
    dom = Dom(chromium(page.as_uri() + "#label=" + quote(label), tmp_path, "--dump-dom"))
    seqs = dom.having("data-seq")
    assert {a["data-label"] for a in seqs} == {label}
    assert len({a["data-seq"] for a in seqs}) == expected and len(seqs) == expected + in_review
    assert dom.by_id("shown") == f"{expected} sequence{'s' if expected > 1 else ''} shown"
    assert [e[1]["value"] for e in dom.elements if e[0] == "option" and "selected" in e[1]] == [label]


def test_full_view_opens_the_original_or_a_blurred_preview(tmp_path: Path):
    summary = build_run(tmp_path)
    page = write_report(summary, tmp_path / "review", blur_humans=True)
    seqnum = {d.relpath: d.seqnum for d in summary.results.decisions}
    for rel, expected in (("cam2/person_1.jpg", r"\.deepfaune-thumbs/p-[0-9a-f]{24}\.jpg"),
                          ("cam2/near_badger_1.jpg", r"\.\./season/cam2/near_badger_1\.jpg")):
        dom = Dom(chromium(f"{page.as_uri()}#open={seqnum[rel]}.0", tmp_path, "--dump-dom"))
        (box,) = [e for e in dom.elements if e[1].get("id") == "lightbox"]
        assert "open" in box[1]["class"].split() and rel in box[2]
        full = [e[1]["src"] for e in dom.elements if e[0] == "img" and e[1].get("alt") == rel and "loading" not in e[1]]
        assert len(full) == 1 and re.fullmatch(expected, full[0])
        assert not dom.having("data-broken")


def test_screenshot_looks_like_a_report(page: Path, tmp_path: Path):
    shot = tmp_path / "deepfaune-report.png"
    chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,1600")
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape == (1600, 1280, 3)
    header = image[60:120, 40:400]  # the green title bar, under the red stand-in banner
    assert abs(header.mean(axis=(0, 1)) - [46, 107, 79]).max() < 40
    banner = image[5:30, 300:900]
    assert banner[..., 0].mean() > 150 and banner[..., 1].mean() < 80
    assert image.std() > 20  # not a blank page
    artifacts = os.environ.get("DEEPFAUNE_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)


def test_deployments_map_draws_each_station_and_shows_names_as_text(tmp_path: Path):
    """Coordinates for cam1, cam2 and a station named like a script (no sequences); the top folder has none."""
    evil = "<script>alert(1)</script>"
    summary = build_run(tmp_path)
    summary.manifest.station_coordinates = {"cam1": (45.20, 5.70), "cam2": (45.25, 5.80), evil: (45.18, 5.76)}
    page = write_report(summary, tmp_path / "review")
    dom = Dom(chromium(page.as_uri(), tmp_path, "--dump-dom"))
    (svg,) = [e for e in dom.elements if e[0] == "svg" and e[1].get("id") == "station-map"]
    markers = [e for e in dom.elements if e[0] == "g" and "data-station" in e[1]]
    assert sorted(e[1]["data-station"] for e in markers) == sorted(["cam1", "cam2", evil])
    assert {e[1]["data-station"]: int(e[1]["data-animals"]) for e in markers} == {"cam1": 3, "cam2": 1, evil: 0}
    assert len([e for e in dom.elements if e[0] == "circle"]) == 3
    texts = {e[2].strip() for e in dom.elements if e[0] == "text"}
    assert {"cam1 (3)", "cam2 (1)", evil + " (0)"} <= texts
    assert "renard 2, indéfini 1" in [e for e in markers if e[1]["data-station"] == "cam1"][0][2]  # its hover title
    assert dom.by_id("map-missing") == "no coordinates: (top folder)"
    assert "km" in [e for e in dom.elements if e[1].get("id") == "map-scale"][0][2]
    # the name stayed text: the page's two scripts are its only ones
    assert len([e for e in dom.elements if e[0] == "script"]) == 2 and evil in svg[2]
    shot = tmp_path / "deepfaune-report-map.png"
    chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    orange = (abs(image - [224, 158, 62]).max(axis=2) < 30).sum()  # the markers' fill (75 % over the map)
    assert orange > 200
    artifacts = os.environ.get("DEEPFAUNE_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)


def test_item16_4_video_full_view_and_season_tables(tmp_path: Path):
    """A video opens as a video (an AVI, which no browser plays, falls back to its key-frame thumbnail and a
    link to the file); the time-of-day chart and the species × station table are drawn from the page's data."""
    from deepfaune_plugin.cli import main
    from fakes import registry_with_fake
    from imagegen import make_jpeg
    from test_report_season import T0, page_data
    from test_video import RED_BGR, write_video

    src = tmp_path / "season"
    make_jpeg(src / "cam1" / "fox_1.jpg", date=T0)
    make_jpeg(src / "cam2" / "badger_1.jpg", date=T0 + timedelta(hours=15), seed=1)
    write_video(src / "cam1" / "fox_clip.avi", 25, 30, blobs=lambda i: [(RED_BGR, (60, 40, 200, 160))])
    assert main(["run", str(src), "--backend", "fake", "-q", "--no-store"], registry=registry_with_fake()) == 0
    page = src / "deepfaune-report.html"
    seq = next(s for s in page_data(page)["sequences"] if s["files"][0]["f"] == "cam1/fox_clip.avi")
    dom = Dom(chromium(f"{page.as_uri()}#open={seq['id']}.0", tmp_path, "--dump-dom"))
    (box,) = [e for e in dom.elements if e[1].get("id") == "lightbox"]
    assert "open" in box[1]["class"].split() and "cam1/fox_clip.avi" in box[2]
    videos = [e[1] for e in dom.elements if e[0] == "video"]
    fallback = [e for e in dom.elements if e[1].get("data-broken") == "video"]
    # Chromium cannot play an MJPEG AVI: the player gave way to the still and a link to the file
    assert videos == [] and len(fallback) == 1 and "cannot play .AVI files" in fallback[0][2]
    assert "cam1/fox_clip.avi" in [e[1].get("href") for e in dom.elements if e[0] == "a"]
    assert not [e for e in dom.elements if e[1].get("data-broken") == "full"]
    hours = {int(a["data-h"]): int(a["data-n"]) for a in dom.having("data-h")}
    assert len(hours) == 24 and {h: n for h, n in hours.items() if n} == {6: 1, 21: 1}  # the clip has no date
    rows = [e for e in dom.elements if e[0] == "tr" and "data-station" in e[1]]
    assert [(r[1]["data-label"], r[1]["data-station"]) for r in rows] == [("blaireau", "cam2"), ("renard", "cam1")]


def test_evaluation_section_and_its_chart_show_the_numbers_checked_by_hand(tmp_path: Path):
    """Human labels the source holds (as a host's raw text): fox_1 fox (DeepFaune fox 0.98: right), unsure_fox
    "renard" (fox 0.51: right at 0.50, undefined above), near_badger "wolf" (badger 0.855: wrong up to 0.85),
    empty_1 empty (right); broken_1 failed and fox_root's "unicorn" are left out. At 0.80: 4 labelled,
    3 covered, 2 right; at 0.50: 4 covered, 3 right; at 0.95: 2 covered, 2 right."""
    summary = build_run(tmp_path)
    summary.manifest.human_labels = {"cam1/fox_1.jpg": "fox", "cam1/unsure_fox_1.jpg": "renard",
                                     "cam2/near_badger_1.jpg": "wolf", "cam2/empty_1.jpg": "empty",
                                     "cam2/broken_1.jpg": "fox", "fox_root.jpg": "unicorn"}
    page = write_report(summary, tmp_path / "review")
    dom = Dom(chromium(page.as_uri(), tmp_path, "--dump-dom"))
    assert dom.elements[0][1].get("data-ready") == "1"
    section = dom.by_id("evaluation")
    assert section.startswith("Evaluation") and "4 files people labelled" in section
    sweep = {e[1]["data-t"]: e[2] for e in dom.elements if e[0] == "tr" and "data-t" in e[1]}
    assert sorted(sweep) == [f"{0.5 + 0.05 * i:.2f}" for i in range(10)]

    def cells(t: str) -> list[str]:
        (row,) = [i for i, e in enumerate(dom.elements) if e[0] == "tr" and e[1].get("data-t") == t]
        return [e[2] for e in dom.elements[row + 1:row + 6]]

    assert cells("0.80") == ["0.80 (this run)", "75.0%", "66.7%", "75.0%", "66.7%"]
    assert cells("0.50") == ["0.50", "100.0%", "75.0%", "100.0%", "75.0%"]
    assert cells("0.95") == ["0.95", "50.0%", "100.0%", "50.0%", "100.0%"]
    # the chart: 4 lines (coverage, accuracy; per image, per sequence) of 10 points, drawn from the same numbers
    (chart,) = [e for e in dom.elements if e[0] == "svg" and e[1].get("id") == "eval-chart"]
    points = {(line[1]["data-level"], line[1]["data-metric"]): {} for line in dom.elements
              if line[0] == "g" and "data-metric" in line[1]}
    assert sorted(points) == [("image", "accuracy"), ("image", "coverage"), ("sequence", "accuracy"),
                              ("sequence", "coverage")]
    circles = [e[1] for e in dom.elements if e[0] == "circle" and "data-v" in e[1]]
    assert len(circles) == 40
    lines = [e for e in dom.elements if e[0] == "g" and "data-metric" in e[1]]
    start = [i for i, e in enumerate(dom.elements) if e in lines]
    for i, line in zip(start, lines):
        values = {e[1]["data-t"]: float(e[1]["data-v"]) for e in dom.elements[i + 1:i + 22] if e[0] == "circle"}
        points[(line[1]["data-level"], line[1]["data-metric"])] = values
    assert points[("sequence", "coverage")]["0.80"] == 0.75 and points[("sequence", "accuracy")]["0.80"] == 0.6667
    assert points[("image", "accuracy")]["0.50"] == 0.75 and points[("image", "coverage")]["0.95"] == 0.5
    assert "eval-run-threshold" in {e[1].get("id") for e in dom.elements}
    # the confusion matrix and the per-class figures at the run's threshold, per sequence
    hits = {(e[1].get("data-deepfaune"), e[1].get("data-n")) for e in dom.elements
            if e[0] == "td" and "data-deepfaune" in e[1] and e[1]["data-n"] != "0"}
    assert hits >= {("fox", "1"), ("badger", "1"), ("undefined", "1"), ("empty", "1")}
    fox = next(e[2] for e in dom.elements if e[0] == "tr" and e[1].get("data-label") == "fox"
               and dom.elements.index(e) > dom.elements.index(next(x for x in dom.elements
                                                                     if x[1].get("id") == "eval-classes-sequence")))
    assert fox == "fox211100.0%50.0%"  # 2 labelled by people, 1 by DeepFaune, 1 both: precision 1, recall 0.5
    assert "unicorn" in dom.by_id("eval-notes")
    assert chart[2] is not None and len([e for e in dom.elements if e[0] == "script"]) == 2
