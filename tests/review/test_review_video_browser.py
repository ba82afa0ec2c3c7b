"""Issue 33.6 must-show: in real headless Chromium, a video of the season enlarged (`o`) plays in the page from
its key frame (the frame DeepFaune classified), with the key frame's box drawn over it while the clip stands at
that frame, and not once it plays on. The clip is a small VP8 Matroska video (a format Chromium plays) written
with OpenCV; the stand-in models see its red blob as an animal."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from deepfaune_plugin.testing import registry_with, run_cli
from cdp import Browser
from test_review_browser import CHROMIUM, Review, keep
from test_video import RED_BGR, WIDTH, HEIGHT, frame_picture

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
FPS, FRAMES = 10, 60  # a 6 s clip
BLOB = (40, 30, 120, 110)  # x1, y1, x2, y2 of the red animal, in frames 20 to 59


def write_clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write VP8 video")
    for i in range(FRAMES):
        writer.write(frame_picture(i, [(RED_BGR, BLOB)] if i >= 20 else []))
    writer.release()
    return path


def test_a_video_plays_from_its_key_frame_with_its_box(tmp_path, standin_models):
    root = tmp_path / "season"
    write_clip(root / "cam1" / "clip.mkv")
    registry = registry_with()
    common = ["--models-dir", str(standin_models), "--store", str(tmp_path / "store.sqlite"), "--lang", "en",
              "--no-report"]
    ran = run_cli(["run", root, *common], registry)
    assert ran.code == 0, ran.stderr
    review = Review(["review", str(root), *common, "--all", "--reviewer", "Ana Lopez"], registry)
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=review.server.url)
        browser.wait_for("document.body.dataset.loaded === '1'")
        f = browser.evaluate("(async () => (await (await fetch('/api/page/0')).json()).sequences[0].files[0])()")
        assert f["f"] == "cam1/clip.mkv" and f["video"] is True
        # DeepFaune samples frames 0, 5, 10 ... of a 6 s clip at 10 fps; the key frame is one with the animal
        assert f["key_time"] is not None and 2.0 <= f["key_time"] < FRAMES / FPS, f
        assert len(f["boxes"]) == 1 and f["boxes"][0]["c"] == "animal", f["boxes"]
        browser.key("o")
        browser.wait_for("(() => { const v = document.getElementById('clip'); return !v.hidden && v.readyState >= 2 "
                         f"&& Math.abs(v.currentTime - {f['key_time']}) < 0.05; }})()")
        assert browser.evaluate("document.getElementById('large').hidden") is True
        assert browser.evaluate("document.getElementById('clip').videoWidth") == WIDTH
        # the key frame's box drawn over the picture where the store has it: its place on the screen, as a
        # fraction of the clip's picture (the controls lie over the picture, they take none of its height)
        shown = browser.evaluate(
            "(() => { const v = document.getElementById('clip').getBoundingClientRect(); "
            "return [...document.querySelectorAll('#boxlayer .ebox')].map(b => { const r = b.getBoundingClientRect(); "
            "return [b.classList[1], (r.left - v.left) / v.width, (r.top - v.top) / v.height, r.width / v.width, "
            "r.height / v.height]; }); })()")
        box = f["boxes"][0]
        assert len(shown) == 1 and shown[0][0] == "animal", shown
        assert shown[0][1:] == pytest.approx([box["x"], box["y"], box["w"], box["h"]], abs=0.01), (shown, box)
        # and that is where the animal is (the stand-in detector's box, within a few pixels)
        assert [box["x"] * WIDTH, box["y"] * HEIGHT, (box["x"] + box["w"]) * WIDTH,
                (box["y"] + box["h"]) * HEIGHT] == pytest.approx(BLOB, abs=10), box
        # the controls' strip is the video's: a click there reaches the play button, not the box editor
        assert browser.evaluate("(() => { const v = document.getElementById('clip'); const r = v.getBoundingClientRect(); "
                                "return document.elementFromPoint(r.left + 20, r.bottom - 15) === v; })()") is True
        keep(browser.screenshot(tmp_path / "review-video.png"))
        # it plays on from there; the box belongs to the key frame only, so it goes
        browser.evaluate("(async () => { const v = document.getElementById('clip'); v.muted = true; await v.play(); })()")
        browser.wait_for(f"document.getElementById('clip').currentTime > {f['key_time']} + 0.5", timeout=20)
        browser.wait_for("document.querySelectorAll('#boxlayer .ebox').length === 0")
        browser.key("Escape")
        assert browser.evaluate("document.getElementById('viewer').hidden") is True
        assert browser.evaluate("document.getElementById('clip').paused") is True
        assert browser.problems() == []
    finally:
        browser.close()
        review.stop()
