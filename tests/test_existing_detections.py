"""Detector mode "existing": classify boxes another detector found (MegaDetector), as DeepFaune 1.4.1's
DetectorJSON does, and Timelapse's --use-existing-detections that feeds it from a .ddb.

The .ddb gets MegaDetector's boxes through our reproduction of Timelapse's import (boxes widened by
0.002 on each side, 3 decimals), exactly as a user's database holds them.  The images are 800x600
with a red blob at (300, 200)-(600, 450); MegaDetector's box for it is (0.375, 0.3333, 0.375, 0.4167).
"""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.engine import onnx_models
from deepfaune_plugin.engine.crop import normalise
from deepfaune_plugin.engine.known_boxes import crop_box, select_known
from deepfaune_plugin.engine.onnx_models import OnnxClassifier
from deepfaune_plugin.hooks import deepfaune as deepfaune_backend
from timelapse_build import Control, create_ddb, write_template
from deepfaune_plugin.hooks.timelapse.existing import ExistingDetections, parse_bbox, untrim
from deepfaune_plugin.hooks.timelapse.host import DEFAULT_JSON, TimelapseHost
from deepfaune_plugin.hooks.timelapse.recognitions import trim_recognitions, write_ddb
from deepfaune_plugin.models.installed import InstalledModels
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from deepfaune_plugin.types import ANIMAL, PERSON, VEHICLE, KnownBox, MediaItem
from ddbquery import dump, rows
from fakes import registry_with_fake
from imagegen import RED, make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)
W, H = 800, 600
MD_FOX = [0.375, 0.3333, 0.375, 0.4167]  # MegaDetector's box of the red blob (4 decimals, as MD writes)
#: The MegaDetector file: fox_1 has the blob (0.93), a weak animal (0.35) and a person at exactly 0.4 (both
#: ignored by DeepFaune's strict > 0.4); person_2 has a person more confident than its animal; empty_3 was
#: processed with no box; lowconf_4 holds only a 0.4 animal; nomd_5 is not in the file at all.
MD_IMAGES = {
    "cam1/fox_1.jpg": [("1", 0.93, MD_FOX), ("1", 0.35, [0.05, 0.05, 0.1, 0.1]), ("2", 0.4, [0.8, 0.1, 0.1, 0.3])],
    "cam1/person_2.jpg": [("1", 0.7, MD_FOX), ("2", 0.91, [0.1, 0.2, 0.2, 0.5])],
    "cam1/empty_3.jpg": [],
    "cam2/lowconf_4.jpg": [("1", 0.4, MD_FOX)],
}
FILES = [*MD_IMAGES, "cam2/nomd_5.jpg"]
QUIET = dict(progress=False, log=lambda msg: None, store=False, report=False)


def megadetector_file(images=MD_IMAGES) -> dict:
    return {
        "info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt",
                 "detector_metadata": {"megadetector_version": "v5a.0.0", "typical_detection_threshold": 0.2,
                                       "conservative_detection_threshold": 0.05}},
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "images": [{"file": rel, "detections": [{"category": c, "conf": conf, "bbox": box} for c, conf, box in dets]}
                   for rel, dets in images.items()],
    }


def make_set(root: Path, images=MD_IMAGES) -> Path:
    """An image set whose .ddb holds MegaDetector's recognitions, stored as Timelapse's import stores them."""
    for i, rel in enumerate(FILES):
        make_jpeg(root / rel, width=W, height=H, date=T0 + timedelta(seconds=3 * i), seed=i,
                  blobs=[(RED, (300, 200, 600, 450))])
    tdb = write_template(root / "TimelapseTemplate.tdb", [Control("Notes", "Note")])
    ddb = create_ddb(tdb, root / "TimelapseData.ddb", [(rel, T0) for rel in FILES])
    write_ddb(ddb, megadetector_file(images))
    return ddb


def stored_boxes(ddb: Path, name: str) -> list[tuple]:
    return rows(ddb, "SELECT CAST(x.category AS TEXT), x.conf, x.bbox, CAST(x.classification AS TEXT) FROM "
                     "Detections x JOIN DataTable d ON d.Id = x.Id WHERE d.File = ? ORDER BY x.detectionID", (name,))


def registry():
    reg = registry_with_fake()
    reg.hosts["timelapse"] = Registered("timelapse", TimelapseHost(), "timelapse", "tests")
    return reg


@pytest.fixture
def no_detector(monkeypatch):
    """Loading a detector fails the test: mode "existing" must not need one."""
    def refuse(*args, **kwargs):
        raise AssertionError("a detector was loaded in detector mode 'existing'")

    monkeypatch.setattr(onnx_models, "OnnxDetector", refuse)
    monkeypatch.setattr(deepfaune_backend, "OnnxDetector", refuse)


def deepfaune_crop_logits(models: Path, image_path: Path, box) -> np.ndarray:
    """Logits of DeepFaune's crop for a normalised MegaDetector box, computed here step by step:
    convertJSONboxToBox (int, x2 = x1 + int(w*W)), cropSquareCVtoPIL, Pillow bicubic to 182."""
    x1, y1 = int(box[0] * W), int(box[1] * H)
    x2, y2 = x1 + int(box[2] * W), y1 + int(box[3] * H)
    xs, ys = x2 - x1, y2 - y1
    if xs > ys:
        y1, y2 = y1 - int((xs - ys) / 2), y2 + int((xs - ys) / 2)
    if ys > xs:
        x1, x2 = x1 - int((ys - xs) / 2), x2 + int((ys - xs) / 2)
    rgb = np.asarray(Image.open(image_path).convert("RGB"))
    crop = Image.fromarray(rgb[max(0, y1):min(y2, H), max(0, x1):min(x2, W)]).resize((182, 182), Image.BICUBIC)
    classifier = OnnxClassifier(InstalledModels(models).file_for("1.4", "classifier"), threads=1, size=182)
    return classifier(normalise(np.asarray(crop)[None]))[0][0]


# --- the rules, without any host ---------------------------------------------------------------------

def test_deepfaune_json_rules_threshold_selection_and_pixel_box():
    boxes = (KnownBox(0.1, 0.1, 0.2, 0.2, 0.4, ANIMAL),  # not above 0.4: ignored
             KnownBox(0.5, 0.5, 0.2, 0.2, 0.8, ANIMAL),
             KnownBox(0.0155, 0.2, 0.0155, 0.3, 0.9, VEHICLE),
             KnownBox(0.3, 0.3, 0.1, 0.1, 0.9, PERSON))  # ties the vehicle: the earlier box wins
    chosen = select_known(boxes, 100, 50)
    assert [(d.category, d.conf) for d in chosen.detections] == [(VEHICLE, 0.9), (PERSON, 0.9), (ANIMAL, 0.8)]
    assert chosen.selected == 0  # the most confident box of any category, not the animal (unlike the detector path)
    # x2 = int(x*W) + int(w*W) = 1 + 1, not int((x + w)*W) = 3: DeepFaune's arithmetic, kept
    assert crop_box(boxes[2], 100, 50) == (1, 10, 2, 25) == chosen.crop
    assert chosen.detections[0].box == pytest.approx((1.55, 10.0, 3.1, 25.0))  # the box itself, unrounded
    assert select_known((KnownBox(0.1, 0.1, 0.2, 0.2, 0.4, ANIMAL),), 100, 50).selected is None
    with pytest.raises(ValueError, match="1 animal, 2 person or 3 vehicle"):
        KnownBox(0.1, 0.1, 0.2, 0.2, 0.9, 4)


def test_backend_classifies_known_boxes_without_a_detector(tmp_path: Path, standin_models: Path, no_detector):
    image = make_jpeg(tmp_path / "a.jpg", width=W, height=H, blobs=[(RED, (300, 200, 600, 450))])
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    items = [
        MediaItem(image, "a.jpg", ".", known_boxes=(KnownBox(*MD_FOX, 0.93, ANIMAL),
                                                    KnownBox(0.1, 0.2, 0.2, 0.5, 0.95, PERSON))),
        MediaItem(image, "b.jpg", ".", known_boxes=(KnownBox(*MD_FOX, 0.93, ANIMAL),)),
        MediaItem(image, "c.jpg", ".", known_boxes=()),
        MediaItem(image, "d.jpg", "."),
        MediaItem(video, "clip.mp4", ".", known_boxes=()),
    ]
    predictor = deepfaune_backend.DeepFauneBackend().open(
        RunSettings(models_dir=standin_models, detector_mode="existing", threads=1))
    assert predictor.info["detector_mode"] == "existing" and list(predictor.info["files"]) == ["classifier"]
    a, b, c, d, clip = predictor.predict(items)
    assert a.category == PERSON and a.logits is None and (a.count, a.humancount) == (1, 1)
    assert b.category == ANIMAL and b.detections[0].source == "existing"
    assert np.array_equal(b.logits, deepfaune_crop_logits(standin_models, image, MD_FOX))
    assert (c.failure, c.detections, c.selected) == (None, [], None)
    assert d.failure == "no existing detections for this file"
    assert "images only" in clip.failure


def test_untrim_inverts_timelapse_import_within_its_rounding():
    rng = np.random.default_rng(3)
    originals = [[round(float(v), 4) for v in rng.uniform(0.003, 0.45, 4)] for _ in range(300)]
    originals += [[round(float(v), 3) for v in rng.uniform(0.003, 0.45, 4)] for _ in range(300)]
    originals += [[0.0, 0.0015, 0.2, 0.3], MD_FOX]
    trimmed = trim_recognitions({"images": [{"file": f"{i}.jpg", "detections": [
        {"category": "1", "conf": 0.9, "bbox": box}]} for i, box in enumerate(originals)]})
    for original, image in zip(originals, trimmed["images"]):
        (det,) = image["detections"]
        stored = parse_bbox(", ".join(map(str, det["bbox"])))
        back = untrim(stored)
        exact = all(round(v, 3) == v for v in original)
        tolerance = 0.0025 if min(original[:2]) < 0.0025 else (1e-12 if exact else 0.0005 + 1e-9)
        assert np.allclose(back, original, rtol=0, atol=tolerance), (original, stored, back)
    assert untrim((0.373, 0.331, 0.379, 0.421)) == (0.375, 0.333, 0.375, 0.417)


# --- Timelapse: --use-existing-detections --------------------------------------------------------------

def test_timelapse_classifies_megadetector_boxes_from_the_ddb(tmp_path: Path, standin_models: Path, no_detector):
    root = tmp_path / "set"
    ddb = make_set(root)
    # what Timelapse keeps of MegaDetector's fox box: widened by 0.002 each side, 3 decimals
    assert stored_boxes(ddb, "fox_1.jpg")[0] == ("1", 0.93, "0.373, 0.331, 0.379, 0.421", None)
    logs: list[str] = []
    summary = run(root, RunSettings(models_dir=standin_models, lang="en", threads=1), host="timelapse",
                  host_options={"use_existing_detections": True, "write_ddb": True}, registry=registry(),
                  **{**QUIET, "log": logs.append})
    assert summary.results.settings.detector_mode == "existing"
    assert any("detector mode existing" in line for line in logs)
    raw = summary.results.raw
    fox = raw["cam1/fox_1.jpg"]
    assert [(d.category, d.conf) for d in fox.detections] == [(ANIMAL, 0.93)]  # 0.4 and 0.35 boxes ignored
    # the crop is the one of MegaDetector's own (un-widened) box; the widened box would crop elsewhere
    assert crop_box(KnownBox(0.373, 0.331, 0.379, 0.421, 0.93, 1), W, H) != crop_box(KnownBox(*MD_FOX, 0.93, 1), W, H)
    assert np.array_equal(fox.logits, deepfaune_crop_logits(standin_models, root / "cam1/fox_1.jpg", MD_FOX))
    assert raw["cam1/person_2.jpg"].category == PERSON and raw["cam1/person_2.jpg"].logits is None
    assert raw["cam1/empty_3.jpg"].detections == [] and raw["cam2/lowconf_4.jpg"].detections == []
    assert raw["cam2/nomd_5.jpg"].failure == "no existing detections for this file"
    by_file = {d.relpath: d for d in summary.results.decisions}
    assert by_file["cam1/person_2.jpg"].predictionbase == "human"
    assert by_file["cam1/empty_3.jpg"].predictionbase == by_file["cam2/lowconf_4.jpg"].predictionbase == "empty"

    d = json.loads((root / DEFAULT_JSON).read_text(encoding="utf-8"))
    assert d["info"]["detector"] == "md_v5a.0.0.pt"
    assert d["info"]["detector_metadata"]["megadetector_version"] == "v5a.0.0"
    images = {im["file"]: im for im in d["images"]}
    (det,) = images["cam1/fox_1.jpg"]["detections"]
    assert det["bbox"] == [0.375, 0.333, 0.375, 0.417] and det["conf"] == 0.93  # MegaDetector's box, 3 decimals
    assert len(det["classifications"]) == 1
    assert images["cam2/nomd_5.jpg"]["failure"] == "no existing detections for this file"
    # re-imported by Timelapse's rules, the box is stored exactly as before; the ignored boxes are gone
    (fox_row,) = stored_boxes(ddb, "fox_1.jpg")
    assert fox_row[:3] == ("1", 0.93, "0.373, 0.331, 0.379, 0.421") and fox_row[3] is not None
    assert stored_boxes(ddb, "nomd_5.jpg") == []
    assert rows(ddb, "SELECT detector FROM Info") == [("md_v5a.0.0.pt",)]

    again = run(root, RunSettings(models_dir=standin_models, lang="en", threads=1), host="timelapse",
                host_options={"use_existing_detections": True}, registry=registry(), **QUIET)
    assert np.array_equal(again.results.raw["cam1/fox_1.jpg"].logits, fox.logits)  # its own rows: same boxes
    assert [x.prediction for x in again.results.decisions] == [x.prediction for x in summary.results.decisions]


def test_boxes_deepfaune_wrote_itself_are_not_existing_detections(tmp_path: Path):
    root = tmp_path / "set"
    ddb = make_set(root, images={})
    host = TimelapseHost()
    with pytest.raises(Exception, match="no image recognitions from another detector"):
        host.read(root, {"use_existing_detections": True})
    run(root, RunSettings(backend="fake", lang="en"), host="timelapse", host_options={"write_ddb": True},
        registry=registry(), **QUIET)  # DeepFaune's own detector (the fake) writes every file's rows
    assert len(stored_boxes(ddb, "fox_1.jpg")) == 1
    with pytest.raises(Exception, match=r"those of 5 file\(s\) were written by DeepFaune's own detector"):
        host.read(root, {"use_existing_detections": True})
    write_ddb(ddb, megadetector_file({"cam1/person_2.jpg": MD_IMAGES["cam1/person_2.jpg"]}))  # MD re-run on one file
    manifest = host.read(root, {"use_existing_detections": True})
    known = {item.relpath: item.known_boxes for item in manifest.items}
    assert [b.category for b in known.pop("cam1/person_2.jpg")] == [ANIMAL, PERSON]
    assert set(known.values()) == {None}
    assert manifest.detector_mode == "existing"
    assert any("4 file(s) hold recognitions DeepFaune's own detector wrote" in p.reason for p in manifest.problems)


def test_stored_outputs_are_reused_only_for_the_same_boxes(tmp_path: Path, standin_models: Path, no_detector):
    root = tmp_path / "set"
    ddb = make_set(root)
    settings = RunSettings(models_dir=standin_models, lang="en", threads=1)
    options = dict(host="timelapse", host_options={"use_existing_detections": True}, registry=registry(),
                   progress=False, log=lambda msg: None, report=False, store=tmp_path / "store.sqlite")
    first = run(root, settings, **options).results.backend_info
    assert (first["computed"], first["reused"]) == (5, 0)
    second = run(root, settings, **options).results.backend_info
    assert (second["computed"], second["reused"]) == (1, 4)  # the failure is never stored
    conn = sqlite3.connect(ddb)
    with conn:  # MegaDetector re-run: fox_1's box moved
        conn.execute("UPDATE Detections SET bbox = '0.2, 0.2, 0.3, 0.3' WHERE Id = (SELECT Id FROM DataTable "
                     "WHERE File = 'fox_1.jpg') AND conf > 0.9")
    conn.close()
    third = run(root, settings, **options)
    assert (third.results.backend_info["computed"], third.results.backend_info["reused"]) == (2, 3)
    assert third.results.raw["cam1/fox_1.jpg"].detections[0].box == pytest.approx((0.202 * W, 0.202 * H,
                                                                                   0.498 * W, 0.498 * H))


def test_existing_mode_on_a_folder_without_known_boxes_fails_each_file_clearly(tmp_path: Path, standin_models: Path,
                                                                             no_detector):
    make_jpeg(tmp_path / "f" / "a.jpg", width=W, height=H)
    summary = run(tmp_path / "f", RunSettings(models_dir=standin_models, detector_mode="existing", threads=1),
                  host="folder", output=tmp_path / "out.csv", **QUIET)
    assert summary.failures == [("a.jpg", "no existing detections for this file")]


def test_existing_detections_reads_first_row_with_boxes():
    box = KnownBox(0.1, 0.1, 0.1, 0.1, 0.9, ANIMAL)
    found = ExistingDetections(boxes={7: (), 9: (box,)})
    assert found.boxes_for((5, 9, 7)) == (box,) and found.boxes_for((7, 9)) == () and found.boxes_for((1,)) is None


@pytest.mark.parametrize("megadetector_first", [False, True])
def test_item15_7_without_the_ledger_the_ddb_tells_deepfaunes_own_boxes(tmp_path: Path, megadetector_first, capsys):
    """The ledger lost: Info.detector naming DeepFaune (or, once Timelapse's merge kept MegaDetector's Info,
    DeepFaune's classification categories) shows DeepFaune wrote boxes here; they are never taken for
    MegaDetector's, and nothing is written."""
    from deepfaune_plugin.cli import main
    from deepfaune_plugin.hooks.timelapse.ledger import LEDGER_NAME

    root = tmp_path / "set"
    ddb = make_set(root, images=MD_IMAGES if megadetector_first else {})
    base = ["run", str(root), "--backend", "fake", "--lang", "en", "-q", "--no-store", "--no-report"]
    assert main([*base, "--write-ddb"], registry=registry()) == 0  # DeepFaune's own detector (the fake)
    info = rows(ddb, "SELECT detector FROM Info")[0][0]
    assert info.startswith("md_v5a") if megadetector_first else info.startswith("DeepFaune 1.4 detector, mode")
    (root / LEDGER_NAME).unlink()
    before = dump(ddb), (root / DEFAULT_JSON).read_bytes()
    capsys.readouterr()
    assert main([*base, "--use-existing-detections"], registry=registry()) == 1
    err = capsys.readouterr().err
    assert "DeepFaune has written recognitions into this database" in err and LEDGER_NAME in err
    assert ("classification category 'bison' is DeepFaune's" if megadetector_first else "Info.detector is") in err
    assert (dump(ddb), (root / DEFAULT_JSON).read_bytes()) == before
