"""--drop-repeats: a box at one place in many images of a station is set aside; a moving animal survives."""
from __future__ import annotations

import csv
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pytest

import deepfaune_plugin.pipeline as pipeline
from deepfaune_plugin.api import ANIMAL, EXISTING_DETECTIONS, Backend, BackendDescription, Detection, MediaItem, RawResult, RunSettings
from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.repeats import RepeatSurvey, Repeats, images_at_place
from deepfaune_plugin.testing import logits_for, registry_with
from imagegen import make_jpeg

W = H = 64  # fractions of 64 are exact: IoU at the threshold compares exactly
STATIC = (8.0, 8.0, 24.0, 24.0)  # the "branch": the detector's most confident box, read as a wild boar
T0 = datetime(2024, 5, 1, 6, 0, 0)


class _Boxes:
    """Per relpath: [(box, conf, English label)]; DeepFaune's rule picks the most confident animal box and the
    logits are its label's.  Given a known box (detector mode "existing"), the label of the scene's box there."""

    def __init__(self, settings: RunSettings, scenes):
        self.classes = load_card(settings.model_version).class_table()
        self.info = {"backend": "boxes", "model_version": settings.model_version}
        self.scenes, self.mode = scenes, settings.detector_mode
        self.calls: list[list[str]] = []

    def _logits(self, label: str) -> np.ndarray:
        return np.asarray(logits_for(self.classes.version, label), dtype=np.float32)

    def predict(self, items: Iterable[MediaItem]) -> Iterator[RawResult]:
        for item in items:
            scene = self.scenes.get(item.relpath, [])
            if self.mode == EXISTING_DETECTIONS:
                kb = item.known_boxes[0]
                box = (kb.x * W, kb.y * H, (kb.x + kb.w) * W, (kb.y + kb.h) * H)
                label = next(lab for b, _, lab in scene if np.allclose(b, box))
                yield RawResult(item.relpath, W, H, [Detection(box, kb.conf, ANIMAL, "existing")], 0,
                                self._logits(label))
                continue
            ordered = sorted(scene, key=lambda e: -e[1])
            dets = [Detection(b, conf, ANIMAL) for b, conf, _ in ordered]
            yield RawResult(item.relpath, W, H, dets, 0 if dets else None,
                            self._logits(ordered[0][2]) if dets else None)

    def close(self) -> None:
        pass


class BoxesBackend(Backend):
    name = "boxes"
    description = "boxes given per file (tests)"

    def __init__(self, scenes):
        self.scenes, self.opened = scenes, []

    def describe(self, settings: RunSettings) -> BackendDescription:
        return BackendDescription(load_card(settings.model_version).class_table(), f"boxes {settings.detector_mode}")

    def open(self, settings: RunSettings) -> _Boxes:
        self.opened.append(settings.detector_mode)
        return _Boxes(settings, self.scenes)


def _station(root: Path, n: int, moving: range, folder: str = "st1") -> dict:
    """`n` images an hour apart (each its own sequence), the static box in all, a red deer walking through
    `moving` (2 px an image: never 10 images at one place)."""
    scenes = {}
    for k in range(n):
        rel = f"{folder}/img{k:02d}.jpg"
        make_jpeg(root / rel, W, H, date=T0 + timedelta(hours=k), seed=k)
        scenes[rel] = [(STATIC, 0.9, "wild boar")]
        if k in moving:
            x = 2.0 * k
            scenes[rel].append(((x, 30.0, x + 12.0, 50.0), 0.7, "red deer"))
    return scenes


def _go(source: Path, out: Path, scenes, store=False, **settings):
    backend = BoxesBackend(scenes)
    registry = registry_with(backends=[backend])
    summary = run(source, RunSettings(backend="boxes", lang="en", **settings), host="folder", output=out,
                  registry=registry, progress=False, log=lambda msg: None, store=store)
    return summary, backend


def _rows(table: Path) -> dict[str, dict]:
    with open(table, newline="", encoding="utf-8") as f:
        return {row["filename"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("store", [False, True], ids=["no store", "store"])
def test_the_static_box_is_set_aside_in_all_30_images_and_the_moving_animal_survives(tmp_path: Path, store):
    scenes = _station(tmp_path / "src", 30, range(5, 15))
    out = tmp_path / "out" / "table.csv"
    summary, backend = _go(tmp_path / "src", out, scenes, store=tmp_path / "store.db" if store else False,
                           drop_repeats=True)
    rows = _rows(out)
    assert len(rows) == 30
    for k in range(30):
        row = rows[f"st1/img{k:02d}.jpg"]
        assert row["warning"] == "1 animal box set aside as a repeat"
        if k in range(5, 15):  # the deer, classified on its own box once the branch was set aside
            assert (row["predictionbase"], row["count"]) == ("red deer", "1")
            assert float(row["bbox_x"]) == pytest.approx(2.0 * k / W, abs=1e-4)
        else:
            assert (row["predictionbase"], row["count"]) == ("empty", "0")
    assert backend.opened == ["DFbsMDS", EXISTING_DETECTIONS]  # the boxes left went through "existing" once
    [group] = summary.repeats
    assert (group.station, group.images, group.relpath) == ("st1", 30, "st1/img00.jpg")
    assert group.box == pytest.approx((8 / 64, 8 / 64, 24 / 64, 24 / 64))

    record = json.loads((out.parent / "table-run.json").read_text(encoding="utf-8"))
    assert record["settings"]["drop_repeats"] is True
    assert (record["settings"]["repeat_iou"], record["settings"]["repeat_min_images"]) == (0.85, 10)
    assert record["repeats"][0]["images"] == 30 and len(record["repeats"][0]["files"]) == 30
    page = (out.parent / "table-report.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script id="df-data" type="application/json">(.*?)</script>', page, re.S).group(1))
    [shown] = data["repeats"]
    assert (shown["station"], shown["n"], shown["f"]) == ("st1", 30, "st1/img00.jpg")
    assert shown["b"] == [0.125, 0.125, 0.25, 0.25] and shown["t"]  # (x, y, w, h) and a thumbnail with the box
    assert "Set aside as repeats" in page  # repeats.js, which draws them


def test_without_the_option_the_branch_is_what_deepfaune_says(tmp_path: Path):
    scenes = _station(tmp_path / "src", 30, range(5, 15))
    out = tmp_path / "out" / "table.csv"
    summary, backend = _go(tmp_path / "src", out, scenes)
    rows = _rows(out)
    assert {row["predictionbase"] for row in rows.values()} == {"wild boar"}
    assert rows["st1/img05.jpg"]["count"] == "2" and rows["st1/img05.jpg"]["warning"] == ""
    assert summary.repeats is None and backend.opened == ["DFbsMDS"]


def _page_without_times(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    return re.sub(r'"(started|finished|elapsed)":[^,]*,', "", text)


def test_off_writes_the_same_bytes_whatever_the_repeat_settings(tmp_path: Path):
    """Off: the table, the page and the record's settings are what they were before the option existed."""
    scenes = _station(tmp_path / "src", 12, range(0))
    a, _ = _go(tmp_path / "src", tmp_path / "a" / "t.csv", scenes)
    b, _ = _go(tmp_path / "src", tmp_path / "b" / "t.csv", scenes, repeat_iou=0.5, repeat_min_images=3)
    assert (tmp_path / "a" / "t.csv").read_bytes() == (tmp_path / "b" / "t.csv").read_bytes()
    page_a = _page_without_times(tmp_path / "a" / "t-report.html")
    assert page_a == _page_without_times(tmp_path / "b" / "t-report.html")
    assert '"repeats"' not in page_a and "set aside" not in page_a  # neither the data nor repeats.js
    for folder in "ab":
        record = json.loads((tmp_path / folder / "t-run.json").read_text(encoding="utf-8"))
        assert not {"drop_repeats", "repeat_iou", "repeat_min_images"} & set(record["settings"])
        assert "repeats" not in record


def test_a_box_in_one_image_fewer_than_the_minimum_is_kept(tmp_path: Path):
    scenes = _station(tmp_path / "src", 9, range(0))
    out = tmp_path / "out" / "t.csv"
    summary, _ = _go(tmp_path / "src", out, scenes, drop_repeats=True, repeat_min_images=10)
    assert {row["predictionbase"] for row in _rows(out).values()} == {"wild boar"}
    assert summary.repeats == []
    summary, _ = _go(tmp_path / "src", tmp_path / "o9" / "t.csv", scenes, drop_repeats=True, repeat_min_images=9)
    assert {row["predictionbase"] for row in _rows(tmp_path / "o9" / "t.csv").values()} == {"empty"}


def test_stations_are_apart(tmp_path: Path):
    """Five images at each of two stations, the same box: not ten images of one place."""
    scenes = {**_station(tmp_path / "src", 5, range(0), "a"), **_station(tmp_path / "src", 5, range(0), "b")}
    summary, _ = _go(tmp_path / "src", tmp_path / "o" / "t.csv", scenes, drop_repeats=True, repeat_min_images=6)
    assert summary.repeats == []


def _survey(boxes_per_image, iou=0.85, min_images=3) -> Repeats:
    survey = RepeatSurvey(iou, min_images)
    for k, boxes in enumerate(boxes_per_image):
        item = MediaItem(Path(f"/x/{k}.jpg"), f"s/{k}.jpg", "s")
        survey.add(item, RawResult(item.relpath, W, H, [Detection(b, 0.9, ANIMAL) for b in boxes], 0))
    return survey.finish()


def test_iou_at_the_threshold_is_the_same_place_and_just_under_is_not():
    base, at = (0.0, 0.0, 10.0, 10.0), (0.0, 0.0, 10.0, 8.5)  # IoU 85/100 exactly
    under = (0.0, 0.0, 10.0, 8.49)
    assert set(_survey([[base], [base], [at]]).aside) == {"s/0.jpg", "s/1.jpg", "s/2.jpg"}
    assert set(_survey([[base], [base], [under]]).aside) == set()


def test_two_boxes_at_one_place_in_one_image_count_one_image():
    base = (0.0, 0.0, 10.0, 10.0)
    assert _survey([[base, base], [base]]).aside == {}
    seen = images_at_place(np.array([[0, 0, .1, .1], [0, 0, .1, .1], [0.5, 0.5, .6, .6]]), np.array([0, 0, 1]), 0.85)
    assert seen.tolist() == [1, 1, 1]


def test_a_set_aside_box_that_was_not_classified_keeps_the_classified_one():
    repeats = Repeats({"a.jpg": {1}}, [])
    logits = np.ones(3, dtype=np.float32)
    raw = RawResult("a.jpg", W, H, [Detection((0, 0, 9, 9), 0.9, ANIMAL), Detection((20, 20, 30, 30), 0.8, ANIMAL),
                                    Detection((40, 40, 50, 50), 0.7, ANIMAL)], 0, logits)
    out, pending = repeats.set_aside(raw)
    assert pending is None and out.selected == 0 and out.logits is logits and out.count == 2
    assert len(raw.detections) == 3  # the stored result is never changed
    out, pending = Repeats({"a.jpg": {0}}, []).set_aside(raw)
    assert (pending, out.selected, out.logits, out.count) == (0, 0, None, 2)


@pytest.mark.parametrize("bad", [{"repeat_iou": 0.0}, {"repeat_iou": 1.5}, {"repeat_iou": float("nan")},
                                 {"repeat_min_images": 1}, {"repeat_min_images": 2.5}])
def test_settings_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match="repeat"):
        RunSettings(drop_repeats=True, **bad)


def test_the_command_line_sets_them(tmp_path: Path):
    from deepfaune_plugin.testing import run_cli

    scenes = _station(tmp_path / "src", 4, range(0))
    registry = registry_with(backends=[BoxesBackend(scenes)])
    out = tmp_path / "o" / "t.csv"
    res = run_cli(["run", tmp_path / "src", "--backend", "boxes", "--lang", "en", "--no-store", "-q", "-o", out,
                   "--drop-repeats", "--repeat-min-images", "4", "--repeat-iou", "0.9"], registry)
    assert res.code == 0, res.stderr
    assert "--drop-repeats: 4 animal boxes set aside as repeats, at 1 places" in res.stderr
    assert {row["predictionbase"] for row in _rows(out).values()} == {"empty"}
    res = run_cli(["run", tmp_path / "src", "--backend", "boxes", "--no-store", "-q", "-o", out,
                   "--drop-repeats", "--repeat-min-images", "1"], registry)
    assert res.code != 0 and "repeat minimum images must be a whole number >= 2, got 1" in res.stderr


def test_every_animal_outputs_follow_their_box_when_a_repeat_before_them_is_set_aside():
    """--every-animal with --drop-repeats: each box's own outputs point into the detections; once a box before
    it is set aside they must point at the same box again (before: the badger's box took the fox's outputs, and
    the last index pointed past the list)."""
    from deepfaune_plugin.api import AnimalLogits

    fox, badger = (np.asarray(logits_for("1.4", name), dtype=np.float32) for name in ("fox", "badger"))
    raw = RawResult("a.jpg", W, H, [Detection(STATIC, 0.9, ANIMAL), Detection((30.0, 30.0, 50.0, 50.0), 0.8, ANIMAL)],
                    0, fox, animals=[AnimalLogits(0, fox), AnimalLogits(1, badger)])
    out, index = Repeats({"a.jpg": {0}}, []).set_aside(raw)
    assert index == 0 and out.detections[0].box == (30.0, 30.0, 50.0, 50.0)
    [left] = out.animals
    assert left.index == 0 and np.array_equal(left.logits, badger)
