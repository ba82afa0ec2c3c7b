"""The review page's data, thumbnails and page file, and the run record (no browser: see test_report_browser.py)."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from deepfaune_plugin.report import RECORD_NAME, REPORT_NAME, THUMBS_DIR, report_dir, write_report, write_run_record
from deepfaune_plugin.report import thumbs as thumbs_mod
from deepfaune_plugin.report.page import embed_json, page_href
from deepfaune_plugin.report.view import activity_bins, build_view
from fakes import FakeBackend, FakePredictor, registry_with_fake
from imagegen import make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)


class TunedPredictor(FakePredictor):
    """The fake backend, with weaker logits for 'unsure' (score ~0.51: undefined) and 'near' (~0.85) files."""

    def raw_for(self, item, outcome):
        raw = super().raw_for(item, outcome)
        if raw.logits is not None:
            if "unsure" in item.path.name:
                raw.logits = raw.logits * 0.5
            elif "near" in item.path.name:
                raw.logits = raw.logits * 0.74
        return raw


class TunedBackend(FakeBackend):
    """Says it runs stand-in models, as `deepfaune models stand-in`'s do: the page shows its banner."""

    def open(self, settings):
        return TunedPredictor(settings, self.rule, standin=True)


def make_season(root: Path) -> Path:
    """7 sequences of 9 readable files: a fox burst, a lone fox, an undefined fox, a badger near the threshold,
    a person, an empty image, an undated fox at the top level, and an unreadable file."""
    for i, gap in enumerate((0, 5, 10)):
        make_jpeg(root / "cam1" / f"fox_{i + 1}.jpg", date=T0 + timedelta(seconds=gap), seed=i)
    make_jpeg(root / "cam1" / "fox_4.jpg", date=T0 + timedelta(days=1), seed=4)
    make_jpeg(root / "cam1" / "unsure_fox_1.jpg", date=T0 + timedelta(days=2), seed=5)
    make_jpeg(root / "cam2" / "near_badger_1.jpg", date=T0, seed=6)
    make_jpeg(root / "cam2" / "person_1.jpg", date=T0 + timedelta(hours=1), seed=7)
    make_jpeg(root / "cam2" / "empty_1.jpg", date=T0 + timedelta(hours=2), seed=8)
    (root / "cam2" / "broken_1.jpg").write_bytes(b"not a jpeg")
    make_jpeg(root / "fox_root.jpg", seed=9)
    return root


def build_run(tmp_path: Path, **settings):
    source = make_season(tmp_path / "season")
    registry = registry_with_fake()
    registry.backends["fake"] = Registered("fake", TunedBackend(), "tests", "tests")
    return run(source, RunSettings(backend="fake", **settings), registry=registry, progress=False, log=lambda m: None)


@pytest.fixture
def summary(tmp_path: Path):
    return build_run(tmp_path)


def csv_numbers(csv: Path) -> dict:
    """What a user counts from the result table: files, sequences, failures, sequences per label."""
    table = pd.read_csv(csv, keep_default_na=False)
    ok = table[table["failure"] == ""]
    return {"files": len(table), "sequences": ok["seqnum"].nunique(), "failed": int((table["failure"] != "").sum()),
            "labels": ok.groupby("prediction")["seqnum"].nunique().to_dict()}


def seq_of(view: dict, relpath: str) -> dict:
    return next(s for s in view["sequences"] if any(f["f"] == relpath for f in s["files"]))


def test_view_numbers_equal_the_table(summary):
    view = build_view(summary)
    expected = csv_numbers(summary.written[0])
    assert expected == {"files": 10, "sequences": 7, "failed": 1,
                        "labels": {"renard": 3, "indéfini": 1, "blaireau": 1, "humain": 1, "vide": 1}}
    assert view["totals"] == {"files": 10, "sequences": 7, "failed": 1, "problems": 0, "review": 2}
    assert {e["label"]: e["sequences"] for e in view["labels"]} == expected["labels"]
    # species by count first, then undefined, human, empty
    assert [e["label"] for e in view["labels"]] == ["renard", "blaireau", "indéfini", "humain", "vide"]
    assert {e["label"]: e["files"] for e in view["labels"]}["renard"] == 5
    assert view["failures"] == [{"f": "cam2/broken_1.jpg", "reason": "not an image (unrecognised format)"}]


def test_review_queue_undefined_first_then_near_threshold(summary):
    view = build_view(summary)
    unsure, near = seq_of(view, "cam1/unsure_fox_1.jpg"), seq_of(view, "cam2/near_badger_1.jpg")
    assert (unsure["label"], unsure["top1"], unsure["review"]) == ("indéfini", "renard", "undefined")
    assert unsure["score"] < 0.8 and 0.8 <= near["score"] <= 0.9
    assert (near["label"], near["review"]) == ("blaireau", "near")
    assert view["review"] == [unsure["id"], near["id"]]
    burst = seq_of(view, "cam1/fox_1.jpg")
    assert burst["review"] is None and burst["score"] == 0.98
    assert [f["f"] for f in burst["files"]] == ["cam1/fox_1.jpg", "cam1/fox_2.jpg", "cam1/fox_3.jpg"]
    assert (burst["start"], burst["end"]) == ("2024-05-03 06:00:00", "2024-05-03 06:00:10")
    # the fake's box (1000, 750)-(2000, 1500) in a 4000×3000 image, normalised x, y, w, h
    assert burst["files"][0]["b"] == [0.25, 0.25, 0.25, 0.25] and burst["files"][0]["bcat"] == "animal"
    # a lower threshold puts the badger out of the queue (0.85 > 0.7 + 0.1) and keeps the undefined one
    assert seq_of(build_view(build_run(summary.manifest.root.parent / "b", threshold=0.7)),
                  "cam2/near_badger_1.jpg")["review"] is None


def test_stations_and_activity(summary):
    view = build_view(summary)
    assert [(s["name"], s["sequences"]) for s in view["stations"]] == [("", 1), ("cam1", 3), ("cam2", 3)]
    assert view["stations"][2]["cats"] == {"animal": 1, "person": 1, "empty": 1}
    assert seq_of(view, "fox_root.jpg")["station"] == ""
    act = view["activity"]
    assert act["unit"] == "day" and act["undated"] == 1
    assert [(b["t"], b["n"]) for b in act["bins"]] == [("2024-05-03", 4), ("2024-05-04", 1), ("2024-05-05", 1)]
    assert act["bins"][0]["cats"] == {"animal": 2, "person": 1, "empty": 1}


def test_activity_bins_keep_empty_days_and_widen_long_spans():
    d = date(2024, 5, 3)
    days = activity_bins([(d, "animal"), (d + timedelta(days=3), "person"), (d, "animal")])
    assert [(b["t"], b["n"]) for b in days["bins"]] == [
        ("2024-05-03", 2), ("2024-05-04", 0), ("2024-05-05", 0), ("2024-05-06", 1)]
    weeks = activity_bins([(date(2024, 1, 3), "animal"), (date(2024, 12, 30), "animal")])
    assert weeks["unit"] == "week" and weeks["bins"][0]["t"] == "2024-01-01" and len(weeks["bins"]) == 53
    months = activity_bins([(date(2000, 1, 1), "empty"), (date(2024, 5, 3), "animal")])
    assert months["unit"] == "month" and len(months["bins"]) == 24 * 12 + 5
    assert months["bins"][-1] == {"t": "2024-05", "n": 1, "cats": {"animal": 1}}
    assert activity_bins([]) == {"unit": "day", "bins": [], "suspect": 0}
    # a clock at 9999 or before 1990 is counted apart, not stretched over (issue 15 item 14: 9999 overflowed)
    odd = activity_bins([(date(9999, 12, 31), "animal"), (date(1980, 1, 1), "animal"), (d, "animal")])
    assert odd["suspect"] == 2 and [b["t"] for b in odd["bins"]] == [d.isoformat()]


def _page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    body = re.search(r'<script id="df-data" type="application/json">(.*?)</script>', text, re.S).group(1)
    return json.loads(body)


def test_page_is_self_contained_with_relative_links(summary, tmp_path: Path):
    out = report_dir(summary)
    assert out == summary.manifest.root  # beside deepfaune.csv
    page = write_report(summary, out)
    assert page == out / REPORT_NAME
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"https?:", text, re.I)  # nothing to fetch, not even a namespace URL
    assert "<link" not in text and "@import" not in text and "url(" not in text
    data = _page_data(page)
    files = {f["f"]: f for s in data["sequences"] for f in s["files"]}
    fox = files["cam1/fox_1.jpg"]
    assert fox["h"] == "cam1/fox_1.jpg"  # the original, relative to the page
    assert re.fullmatch(r"\.deepfaune-thumbs/t-[0-9a-f]{24}\.jpg", fox["t"])
    assert all((out / f["t"]).is_file() for f in files.values())
    assert "cam2/broken_1.jpg" not in files and len(files) == 9
    assert data["outputs"] == [{"name": "deepfaune.csv", "href": "deepfaune.csv"}] and data["record"] == RECORD_NAME
    # a report elsewhere links back to the originals
    other = write_report(summary, tmp_path / "elsewhere dir")
    files = {f["f"]: f for s in _page_data(other)["sequences"] for f in s["files"]}
    assert files["cam1/fox_1.jpg"]["h"] == "../season/cam1/fox_1.jpg"
    assert files["cam1/fox_1.jpg"]["t"].startswith(".deepfaune-thumbs/")


def test_embedded_data_cannot_break_out_of_its_script():
    hostile = {"f": "a</script><script>alert(1)</script><!--&"}
    text = embed_json(hostile)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == hostile
    assert page_href(Path("/data/my season/é.jpg"), Path("/data/out")) == "../my%20season/%C3%A9.jpg"


def _orange(px) -> bool:
    r, g, b = (int(v) for v in px[:3])
    return r > 200 and 100 < g < 200 and b < 90


def test_thumbnails_are_small_with_the_box_drawn(summary, tmp_path: Path):
    page = write_report(summary, tmp_path / "out")
    fox = next(f for s in _page_data(page)["sequences"] for f in s["files"] if f["f"] == "cam1/fox_1.jpg")
    thumb = np.asarray(Image.open(tmp_path / "out" / fox["t"]))
    assert thumb.shape == (240, 320, 3)  # 800×600 → 320×240
    # the box (0.25, 0.25)-(0.5, 0.5) of the image is (80, 60)-(160, 120) in the thumbnail
    assert _orange(thumb[90, 81]) and _orange(thumb[61, 120]) and _orange(thumb[90, 158])
    assert not _orange(thumb[90, 120]) and not _orange(thumb[30, 40])


def test_thumbnails_are_made_once_per_file_version(summary, tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    write_report(summary, out)
    names = sorted(p.name for p in (out / THUMBS_DIR).iterdir())
    assert len(names) == 9
    calls = []
    real = thumbs_mod.render
    monkeypatch.setattr(thumbs_mod, "render", lambda job, *a, **k: calls.append(job.relpath) or real(job, *a, **k))
    write_report(summary, out)
    assert calls == []
    make_jpeg(summary.manifest.root / "cam1" / "fox_4.jpg", date=T0 + timedelta(days=1), seed=44)  # replaced
    write_report(summary, out)
    assert calls == ["cam1/fox_4.jpg"]


def test_blur_humans_blurs_thumbnails_and_full_views(summary, tmp_path: Path):
    plain = write_report(summary, tmp_path / "plain")
    blurred = write_report(summary, tmp_path / "blur", blur_humans=True)

    def person(page):
        f = next(f for s in _page_data(page)["sequences"] for f in s["files"] if f["f"] == "cam2/person_1.jpg")
        return f, np.asarray(Image.open(page.parent / f["t"])).astype(float)

    (fp, a), (fb, b) = person(plain), person(blurred)
    assert fp["h"] == "../season/cam2/person_1.jpg"  # the original: nothing to hide
    assert re.fullmatch(r"\.deepfaune-thumbs/p-[0-9a-f]{24}\.jpg", fb["h"])  # a blurred preview, never the original
    # person box (0.1, 0.1)-(0.3, 0.7) → thumbnail (32, 24)-(96, 168); look inside, away from the drawn frame
    inside, outside = (slice(40, 150), slice(45, 85)), (slice(40, 150), slice(180, 300))
    assert a[inside].std() > 2 * b[inside].std()  # the noise texture is smoothed away
    assert abs(a[outside].std() - b[outside].std()) < 2  # the rest is untouched
    preview = np.asarray(Image.open(blurred.parent / fb["h"]))
    assert preview.shape == (600, 800, 3)  # not enlarged; ≤ 1600 px
    fox = next(f for s in _page_data(blurred)["sequences"] for f in s["files"] if f["f"] == "cam1/fox_1.jpg")
    assert fox["h"] == "../season/cam1/fox_1.jpg"  # no person: the original is fine


def test_run_record_of_a_fake_run(summary, tmp_path: Path):
    out = report_dir(summary)
    page = write_report(summary, out)
    path = write_run_record(summary, out, command=["deepfaune", "run", "season"])
    assert path == out / RECORD_NAME
    rec = json.loads(path.read_text(encoding="utf-8"))
    assert rec["format"] == "deepfaune-run/1" and rec["command"] == ["deepfaune", "run", "season"]
    assert rec["host"] == "folder" and rec["source"] == str(summary.manifest.root.resolve())
    assert rec["settings"] == {"model_version": "1.4", "detector_mode": "DFbsMDS", "threshold": 0.8, "maxlag": 10.0,
                               "lang": "fr", "exclude": [], "bird": False, "models_dir": None, "threads": None,
                               "fast": False, "backend": "fake", "scheduler": None, "device": None,
                               "keep_features": True}
    assert rec["models"]["standin"] is True and rec["models"]["version"] == "1.4"
    numbers = csv_numbers(summary.written[0])
    assert rec["counts"]["files"] == numbers["files"] and rec["counts"]["sequences"] == numbers["sequences"]
    assert rec["counts"]["sequences_per_label"] == numbers["labels"]
    assert rec["failures"] == [{"file": "cam2/broken_1.jpg", "reason": "not an image (unrecognised format)"}]
    csv = summary.written[0]
    assert rec["outputs"] == [{"path": str(csv.resolve()), "bytes": csv.stat().st_size,
                               "sha256": hashlib.sha256(csv.read_bytes()).hexdigest()}]
    started = datetime.fromisoformat(rec["started"])
    assert started.tzinfo is not None and started <= datetime.fromisoformat(rec["finished"])
    assert page.is_file()


def test_run_record_names_the_model_files_actually_used(tmp_path: Path, standin_models: Path):
    source = tmp_path / "src"
    make_jpeg(source / "a.jpg", date=T0, blobs=[((255, 0, 0), (300, 200, 600, 450))])
    make_jpeg(source / "b.jpg", date=T0 + timedelta(seconds=3))
    settings = RunSettings(models_dir=standin_models, lang="en", threshold=0.65, maxlag=5, exclude=("reindeer",),
                           detector_mode="DF", threads=1)
    summary = run(source, settings, progress=False, log=lambda m: None, output=tmp_path / "res.csv")
    rec = json.loads(write_run_record(summary, report_dir(summary)).read_text(encoding="utf-8"))
    assert report_dir(summary) == tmp_path
    recorded = {k: v for k, v in asdict(settings).items()  # recorded only when on
                if k not in ("every_animal", "drop_repeats", "repeat_iou", "repeat_min_images")}
    assert rec["settings"] == {**recorded, "models_dir": str(standin_models), "exclude": ["reindeer"]}
    files = rec["models"]["files"]
    assert sorted(files) == ["classifier", "detector-DF"]  # DF mode: MegaDetector is not loaded
    for entry in files.values():
        data = (standin_models / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["models"]["backend"] == "deepfaune" and rec["models"]["standin"] is True
    assert rec["counts"]["files"] == 2 and rec["command"] is None


def test_previews_for_formats_a_browser_cannot_show_and_for_blurred_videos(tmp_path: Path):
    import cv2

    tif = tmp_path / "a.tif"
    Image.fromarray(np.full((300, 400, 3), 120, np.uint8)).save(tif)
    jpg = make_jpeg(tmp_path / "b.jpg", width=400, height=300)
    video = tmp_path / "c.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (400, 300))
    for value in (200, 10):
        writer.write(np.full((300, 400, 3), value, np.uint8))
    writer.release()
    box = (100.0, 75.0, 200.0, 150.0)
    people = ((0.0, 0.0, 100.0, 100.0),)
    cache = thumbs_mod.ThumbCache(tmp_path / "cache", blur=True, workers=1)
    jobs = [thumbs_mod.Job("a.tif", tif, 400, 300, box), thumbs_mod.Job("b.jpg", jpg, 400, 300, box),
            thumbs_mod.Job("c.avi", video, 400, 300, box, people=people, video=True),
            thumbs_mod.Job("d.avi", video, 400, 300, box, video=True)]
    made = cache.make_all(jobs)
    assert made["a.tif"][1] is not None and made["b.jpg"][1] is None  # TIFF → a JPEG preview; JPEG → the original
    assert made["c.avi"][1] is not None and made["d.avi"][1] is None  # a video with people → a blurred still
    frame = np.asarray(Image.open(made["d.avi"][0]))
    assert frame.shape == (240, 320, 3) and abs(frame[200, 300].astype(int) - 200).max() < 8  # the first frame
    assert Image.open(made["a.tif"][1]).size == (400, 300)
    broken = tmp_path / "e.jpg"
    broken.write_bytes(b"\xff\xd8\xff truncated")
    assert cache.make(thumbs_mod.Job("e.jpg", broken, 400, 300)) == (None, None)


def test_a_review_page_that_cannot_start_is_dropped_with_a_warning(tmp_path: Path, monkeypatch):
    """The page is a convenience: a folder it cannot use costs a warning, never the run (writers.ReviewPage)."""
    import deepfaune_plugin.report.page as page
    from deepfaune_plugin.api import RunSettings
    from deepfaune_plugin.writers import ReviewPage

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(page, "ReportBuilder", refuse)
    said: list[str] = []
    review = ReviewPage(tmp_path, RunSettings(), blur_humans=False, log=said.append)
    assert review.builder is None and review.failed
    assert said == [f"warning: no review page: [Errno 13] Permission denied: '{tmp_path}'"]
