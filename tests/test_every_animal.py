"""`deepfaune run --every-animal` (issue 32, first part): every animal box classified and decided alone, DeepFaune's
own answer unchanged, one row per animal in the folder host's NAME-animals.csv, per-box logits kept in the store."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepfaune_plugin.animals import count_per_sequence, decide_box
from deepfaune_plugin.api import ANIMAL, PERSON, TOO_SMALL, AnimalDecision, AnimalLogits, MediaItem, RawResult, \
    RunSettings
from deepfaune_plugin.cli import main
from deepfaune_plugin.engine.onnx_models import OnnxClassifier
from deepfaune_plugin.hooks.deepfaune import DeepFauneBackend, DeepFaunePredictor
from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.store import decode, encode
from deepfaune_plugin.types import Detection
from imagegen import RED, make_jpeg

CLASSES = load_card("1.4").class_table()
EN = list(CLASSES.names["en"])

#: What the patched detector finds in an 800x600 image, by descending confidence: three animals worth a crop, a
#: person, and an animal whose square crop is 20 px (under MIN_CROP_PX = 32).
MANY = [
    Detection((400.0, 300.0, 600.0, 500.0), 0.95, ANIMAL),
    Detection((300.0, 10.0, 380.0, 150.0), 0.9, PERSON),
    Detection((50.0, 50.0, 250.0, 200.0), 0.85, ANIMAL),
    Detection((650.0, 40.0, 700.0, 90.0), 0.7, ANIMAL),
    Detection((700.0, 500.0, 720.0, 515.0), 0.65, ANIMAL),
]
ONE = [Detection((100.0, 100.0, 300.0, 260.0), 0.9, ANIMAL)]  # in a 640x480 image


def fixed_detections(self, image, tensors=None):
    """The detector, replaced: boxes by image width (800: MANY, 640: ONE, else none)."""
    return list({800: MANY, 640: ONE}.get(image.shape[1], []))


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """The batch size of every classifier call."""
    sizes: list[int] = []
    real = OnnxClassifier.classify  # every pass of the classifier, with or without its features

    def spy(self, batch):
        sizes.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(OnnxClassifier, "classify", spy)
    return sizes


def logits(**values: float) -> np.ndarray:
    out = np.zeros(len(EN), dtype=np.float32)
    for name, value in values.items():
        out[EN.index(name.replace("_", " "))] = value
    return out


def _box_row(box=(100.0, 100.0, 300.0, 250.0)) -> RawResult:
    return RawResult("a.jpg", 800, 600, [Detection(box, 0.9, ANIMAL)], 0)


# -- decisions on given logits: DeepFaune's rules for one row -------------------------------------------------

@pytest.mark.parametrize("settings, key, label, score, top1", [
    # T = 1.10: e^(6/1.1) / (e^(6/1.1) + e^(3/1.1) + 36) = 0.8201
    (RunSettings(lang="en"), "red deer", "red deer", 0.82, "red deer"),
    (RunSettings(lang="en", threshold=0.85), "undefined", "undefined", 0.82, "red deer"),
    (RunSettings(lang="fr", threshold=0.85), "undefined", "indéfini", 0.82, "cerf"),
    # red deer excluded: e^(3/1.1) / (e^(3/1.1) + 36) = 0.2981, under 0.5
    (RunSettings(lang="en", exclude=("red deer",), threshold=0.5), "undefined", "undefined", 0.29, "roe deer"),
    (RunSettings(lang="en", exclude=("red deer",), threshold=0.25), "roe deer", "roe deer", 0.29, "roe deer"),
])
def test_a_box_is_decided_alone_by_deepfaunes_rules(settings, key, label, score, top1):
    decision = decide_box(_box_row(), AnimalLogits(0, logits(red_deer=6.0, roe_deer=3.0)), 3, CLASSES, settings)
    assert (decision.key, decision.label, decision.score, decision.top1) == (key, label, score, top1)
    assert decision.seqnum == 3 and decision.box == (100.0, 100.0, 300.0, 250.0)
    assert decision.normalised == (0.125, 0.166667, 0.25, 0.25) and decision.selected


def test_the_bird_head_refines_a_box_alone():
    bird = np.array([0, 0, 0, 0, 0, 9.0, 0, 0], dtype=np.float32)
    decision = decide_box(_box_row(), AnimalLogits(0, logits(bird=9.0), bird), 1, CLASSES,
                          RunSettings(lang="en", bird=True))
    assert decision.key == f"bird {CLASSES.bird_names['en'][5]}"
    assert decision.score == 0.99


def test_a_box_too_small_to_classify_is_named_so_not_guessed():
    # 20 x 15 px: the square crop is 20 x 20, under MIN_CROP_PX (32), even with confident logits
    decision = decide_box(_box_row((700.0, 500.0, 720.0, 515.0)), AnimalLogits(0, logits(fox=9.0)), 1, CLASSES,
                          RunSettings(lang="en"))
    assert (decision.key, decision.label, decision.score, decision.top1) == (TOO_SMALL, TOO_SMALL, 0.0, "")


def _decision(relpath, seqnum, key) -> AnimalDecision:
    return AnimalDecision(relpath, seqnum, 0, (0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 0.1, 0.1), 0.9, "DF", key, key, 0.9,
                          0.9, key, key, False)


def test_maxn_and_images_per_species_and_sequence():
    rows = count_per_sequence([
        _decision("a.jpg", 1, "fox"), _decision("a.jpg", 1, "fox"), _decision("a.jpg", 1, "badger"),
        _decision("b.jpg", 1, "fox"), _decision("c.jpg", 1, "fox"), _decision("c.jpg", 1, "fox"),
        _decision("c.jpg", 1, "fox"), _decision("d.jpg", 2, "fox"),
    ])
    assert [(r.relpath, r.key, r.maxn, r.images) for r in rows] == [
        ("a.jpg", "fox", 3, 3), ("a.jpg", "fox", 3, 3), ("a.jpg", "badger", 1, 1), ("b.jpg", "fox", 3, 3),
        ("c.jpg", "fox", 3, 3), ("c.jpg", "fox", 3, 3), ("c.jpg", "fox", 3, 3), ("d.jpg", "fox", 1, 1)]


# -- the backend: crops as DeepFaune's, batched, the image's own answer unchanged ------------------------------

def _predict(standin_models: Path, image: Path, every_animal: bool) -> RawResult:
    settings = RunSettings(models_dir=standin_models, threads=1, every_animal=every_animal)
    predictor = DeepFauneBackend().open(settings)
    try:
        return next(predictor.predict([MediaItem(image, image.name, "")]))
    finally:
        predictor.close()


def test_every_animal_box_is_classified_in_one_batch(standin_models, tmp_path, monkeypatch, calls):
    monkeypatch.setattr(DeepFaunePredictor, "_detect", fixed_detections)
    image = make_jpeg(tmp_path / "many.jpg", seed=1)
    default = _predict(standin_models, image, every_animal=False)
    assert calls == [1] and default.animals is None
    calls.clear()
    raw = _predict(standin_models, image, every_animal=True)
    # the image's own box alone, as before; then the two other animals worth a crop in one call; none for the
    # 20-px one
    assert calls == [1, 2]
    np.testing.assert_array_equal(raw.logits, default.logits)
    np.testing.assert_array_equal(raw.bird_logits, default.bird_logits)
    assert (raw.selected, raw.count, raw.humancount) == (default.selected, 4, 1)
    assert [a.index for a in raw.animals] == [0, 2, 3, 4]
    assert raw.animals[0].logits is raw.logits  # computed once
    assert raw.animals[3].logits is None
    # each batched crop gives the logits it gives alone (DeepFaune's crop of that box as the best one)
    monkeypatch.setattr(DeepFaunePredictor, "_detect", lambda self, image, tensors=None: [MANY[2]])
    alone = _predict(standin_models, image, every_animal=False)
    np.testing.assert_allclose(raw.animals[1].logits, alone.logits, rtol=0, atol=1e-4)


def test_the_store_keeps_every_boxes_logits_and_default_entries_unchanged():
    raw = RawResult("a.jpg", 800, 600, list(MANY), 0, logits(fox=2.5), np.arange(8, dtype=np.float32))
    before = encode(raw)
    assert "animals" not in json.loads(before)  # a default run's entry, as it always was
    raw.animals = [AnimalLogits(0, raw.logits, raw.bird_logits), AnimalLogits(2, logits(badger=1.25), None),
                   AnimalLogits(4, None)]
    back = decode("a.jpg", encode(raw)).animals
    assert [a.index for a in back] == [0, 2, 4]
    np.testing.assert_array_equal(back[0].logits, raw.logits)
    np.testing.assert_array_equal(back[0].bird_logits, np.arange(8, dtype=np.float32))
    np.testing.assert_array_equal(back[1].logits, logits(badger=1.25))
    assert back[1].bird_logits is None and back[2].logits is None
    assert decode("a.jpg", before).animals is None


def test_a_default_entry_serves_every_animal_only_when_no_crop_is_missing():
    from deepfaune_plugin.inference import has_animals

    one = RawResult("a.jpg", 800, 600, [MANY[1], MANY[0]], 1, logits(fox=2.0))  # a person, then the classified animal
    assert has_animals(one)
    assert [(a.index, a.logits is one.logits) for a in one.animals] == [(1, True)]
    empty = RawResult("b.jpg", 800, 600, [MANY[1]], 0)  # a person only
    assert has_animals(empty) and empty.animals == []
    assert not has_animals(RawResult("c.jpg", 800, 600, list(MANY), 0, logits(fox=2.0)))  # three more animals
    # existing detections: a more confident person is the classified box; the animal was never cropped
    assert not has_animals(RawResult("d.jpg", 800, 600, [MANY[1], MANY[0]], 0))


# -- the folder host, end to end ---------------------------------------------------------------------------------

@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make_jpeg(src / "cam" / "many.jpg", seed=1)  # 800 x 600: MANY
    make_jpeg(src / "cam" / "one.jpg", width=640, height=480, seed=2)  # ONE
    make_jpeg(src / "cam" / "empty.jpg", width=320, height=240, seed=3)
    return src


def _run(src: Path, models: Path, out: Path, *extra: str) -> int:
    return main(["run", str(src), "--models-dir", str(models), "--threads", "1", "--no-report", "-q",
                 "-o", str(out), *extra])


def test_every_animal_writes_one_row_per_animal_and_leaves_deepfaunes_table_as_it_was(
        source, standin_models, tmp_path, monkeypatch, calls):
    monkeypatch.setattr(DeepFaunePredictor, "_detect", fixed_detections)
    plain, every = tmp_path / "plain" / "out.csv", tmp_path / "every" / "out.csv"
    assert _run(source, standin_models, plain, "--no-store") == 0
    assert not (tmp_path / "plain" / "out-animals.csv").exists()
    assert calls == [1, 1]  # many.jpg and one.jpg
    calls.clear()
    assert _run(source, standin_models, every, "--no-store", "--every-animal") == 0
    assert calls == [1, 2, 1]  # many.jpg, then its two other animals worth a crop; one.jpg
    assert every.read_bytes() == plain.read_bytes()

    animals = pd.read_csv(tmp_path / "every" / "out-animals.csv", keep_default_na=False)
    assert list(animals.columns) == [
        "filename", "seqnum", "x1", "y1", "x2", "y2", "bbox_x", "bbox_y", "bbox_width", "bbox_height", "bbox_conf",
        "detector", "label", "score", "top1", "deepfaune_box", "seq_maxn", "seq_images", "models"]
    assert set(animals["models"]) == {"stand-in"}  # a stand-in run's every file says so (issue 30.9), this one too
    table = pd.read_csv(plain, keep_default_na=False)
    assert animals["filename"].tolist() == ["cam/many.jpg"] * 4 + ["cam/one.jpg"]
    assert animals[["x1", "y1", "x2", "y2"]].values.tolist() == [
        [400.0, 300.0, 600.0, 500.0], [50.0, 50.0, 250.0, 200.0], [650.0, 40.0, 700.0, 90.0],
        [700.0, 500.0, 720.0, 515.0], [100.0, 100.0, 300.0, 260.0]]
    assert animals[["bbox_x", "bbox_y", "bbox_width", "bbox_height"]].values.tolist()[1] == [
        0.0625, 0.083333, 0.25, 0.25]
    assert animals["bbox_conf"].tolist() == [0.95, 0.85, 0.7, 0.65, 0.9]
    assert animals["deepfaune_box"].tolist() == [1, 0, 0, 0, 1]
    assert animals["label"].tolist()[3] == TOO_SMALL and animals["top1"].tolist()[3] == ""
    # the row of DeepFaune's own box says what the table says for that image (one row: the same rules)
    for name in ("cam/many.jpg", "cam/one.jpg"):
        mine = animals[(animals.filename == name) & (animals.deepfaune_box == 1)].iloc[0]
        theirs = table[table.filename == name].iloc[0]
        assert (mine.label, mine.score, mine.seqnum) == (theirs.predictionbase, theirs.scorebase, theirs.seqnum)
    record = json.loads((tmp_path / "every" / "out-run.json").read_text())
    assert record["settings"]["every_animal"] is True
    assert "every_animal" not in json.loads((tmp_path / "plain" / "out-run.json").read_text())["settings"]


def test_a_store_without_the_boxes_is_completed_once_then_reused(source, standin_models, tmp_path, monkeypatch,
                                                                calls):
    monkeypatch.setattr(DeepFaunePredictor, "_detect", fixed_detections)
    store = tmp_path / "store.sqlite"
    assert _run(source, standin_models, tmp_path / "a" / "out.csv", "--store", str(store)) == 0
    calls.clear()
    # made without --every-animal: only many.jpg lacks crops (one.jpg's one animal is the box DeepFaune
    # classified, empty.jpg has none): it alone is computed again, with every box
    assert _run(source, standin_models, tmp_path / "b" / "out.csv", "--store", str(store), "--every-animal") == 0
    assert calls == [1, 2]
    record = json.loads((tmp_path / "b" / "out-run.json").read_text())["backend_info"]
    assert (record["computed"], record["reused"]) == (1, 2)
    assert (tmp_path / "b" / "out.csv").read_bytes() == (tmp_path / "a" / "out.csv").read_bytes()
    calls.clear()
    # now nothing is computed: another threshold, the default run, the same run again
    assert _run(source, standin_models, tmp_path / "c" / "out.csv", "--store", str(store), "--every-animal",
                "--threshold", "0.3") == 0
    assert _run(source, standin_models, tmp_path / "d" / "out.csv", "--store", str(store)) == 0
    assert _run(source, standin_models, tmp_path / "e" / "out.csv", "--store", str(store), "--every-animal") == 0
    assert calls == []
    assert (tmp_path / "d" / "out.csv").read_bytes() == (tmp_path / "a" / "out.csv").read_bytes()
    assert (tmp_path / "e" / "out-animals.csv").read_bytes() == (tmp_path / "b" / "out-animals.csv").read_bytes()
    # and what the store completed is what a run without any store computes
    assert _run(source, standin_models, tmp_path / "f" / "out.csv", "--no-store", "--every-animal") == 0
    assert (tmp_path / "f" / "out-animals.csv").read_bytes() == (tmp_path / "b" / "out-animals.csv").read_bytes()
    assert len(pd.read_csv(tmp_path / "c" / "out-animals.csv")) == 5


def test_the_real_stand_in_detector_gives_one_row_per_counted_animal(standin_models, tmp_path):
    src = tmp_path / "blobs"
    make_jpeg(src / "three.jpg", blobs=[(RED, (50, 50, 250, 200)), (RED, (400, 300, 600, 500)),
                                        (RED, (600, 60, 760, 220))], seed=4)
    make_jpeg(src / "none.jpg", seed=5)
    out = tmp_path / "out.csv"
    assert _run(src, standin_models, out, "--no-store", "--every-animal") == 0
    table = pd.read_csv(out)
    animals = pd.read_csv(tmp_path / "out-animals.csv")
    counts = dict(zip(table.filename, table["count"]))
    assert counts == {"none.jpg": 0, "three.jpg": 3}
    assert animals.filename.tolist() == ["three.jpg"] * 3
    assert animals.deepfaune_box.sum() == 1


def test_an_xlsx_table_gets_its_animals_csv_beside_it_and_library_runs_keep_the_rows(standin_models, tmp_path,
                                                                                     monkeypatch):
    from deepfaune_plugin.pipeline import run

    monkeypatch.setattr(DeepFaunePredictor, "_detect", fixed_detections)
    src = tmp_path / "src"
    make_jpeg(src / "many.jpg", seed=1)
    assert _run(src, standin_models, tmp_path / "out.xlsx", "--no-store", "--every-animal") == 0
    assert len(pd.read_csv(tmp_path / "out-animals.csv")) == 4
    kept = {}
    for every in (False, True):
        summary = run(src, RunSettings(models_dir=standin_models, threads=1, every_animal=every),
                      output=tmp_path / f"lib{int(every)}.csv", store=False, report=False, progress=False,
                      log=lambda m: None)
        kept[every] = summary.results.animals
    assert kept[False] is None and not (tmp_path / "lib0-animals.csv").exists()
    rows = kept[True]
    assert [(a.index, a.selected) for a in rows] == [(0, True), (2, False), (3, False), (4, False)]
    assert rows[3].key == TOO_SMALL
    for a in rows:  # one image: MaxN is how many of its boxes share the label
        assert (a.maxn, a.images) == (sum(b.key == a.key for b in rows), 1)
