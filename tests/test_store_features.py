"""Issue 34 item 1: the classifier's features of every classified crop are kept in the result store (float16, by
the file's content and the models' fingerprint) and read back in bulk with `store.read_features`."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.models.installed import InstalledModels
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.store import (PAGE_SIZE, ResultStore, StoreError, clear_results, content_hash, encode, prune,
                                    read_features, store_info)
from deepfaune_plugin.types import ANIMAL, Detection, MediaItem, RawResult
from imagegen import GREEN, RED, make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)


def _season(root: Path, n: int) -> Path:
    for i in range(n):
        blobs = [(RED, (100, 100, 400, 350))] if i % 3 == 0 else [(GREEN, (50, 50, 250, 450))] if i % 3 == 1 else []
        make_jpeg(root / f"cam{i % 2}" / f"IMG_{i:04d}.JPG", 800, 600, date=T0 + timedelta(seconds=7 * i),
                  blobs=blobs, seed=i)
    return root


def _item(folder: Path, name: str, seed: int) -> MediaItem:
    return MediaItem(make_jpeg(folder / name, seed=seed), name, "")


def _classified(width: int = 1024, seed: int = 0, **kw) -> RawResult:
    rng = np.random.default_rng(seed)
    return RawResult(kw.pop("relpath", "x.jpg"), 800, 600, [Detection((1.0, 2.0, 300.0, 200.0), 0.9, ANIMAL, "DF")],
                     selected=0, logits=rng.normal(size=38).astype(np.float32),
                     features=rng.normal(size=width).astype(np.float32), **kw)


def test_a_run_keeps_each_classified_crops_features_by_content(tmp_path: Path, standin_models: Path):
    """Six photos, two with an animal: two rows, keyed by those files' content, and they are what the stand-in's
    head read (its logits are a Gemm of its 16 features: the stored logits follow from the stored features)."""
    src = _season(tmp_path / "src", 6)
    store = tmp_path / "store.sqlite"
    summary = run(src, RunSettings(models_dir=standin_models), output=tmp_path / "a.csv", store=store, progress=False)
    (use,) = store_info(store).fingerprints
    got = read_features(store, use.fingerprint)
    animals = sorted(src.rglob("IMG_000[03].JPG"))
    assert len(got) == 2 == use.feature_crops and use.feature_bytes == 2 * 16 * 2
    assert set(got.content) == {content_hash(p) for p in animals}
    assert got.values.dtype == np.float16 and got.values.shape == (2, 16)
    assert list(got.frame) == [-1, -1] and list(got.box) == [0, 0]
    model = onnx.load(InstalledModels(standin_models).file_for("1.4", "classifier"))
    gemm = next(n for n in model.graph.node if n.output[0] == "logits")
    w, b = ({i.name: numpy_helper.to_array(i) for i in model.graph.initializer}[k] for k in gemm.input[1:])
    by_content = {content_hash(src / r): raw for r, raw in summary.results.raw.items()}
    for content, values in zip(got.content, got.values):
        logits = by_content[content].logits
        assert np.abs(values.astype(np.float32) @ w.T + b - logits).max() < 0.05 * np.abs(logits).max()
    # the run forgot them once stored (a season's would fill memory); decisions never read them
    assert all(raw.features is None for raw in summary.results.raw.values())
    assert read_features(store, use.fingerprint, [content_hash(animals[1])]).content == (content_hash(animals[1]),)
    assert len(read_features(store, "other models")) == 0


def test_no_features_keeps_none_and_changes_no_output(tmp_path: Path, standin_models: Path):
    src = _season(tmp_path / "src", 3)
    kept = run(src, RunSettings(models_dir=standin_models), output=tmp_path / "a.csv", store=tmp_path / "a.sqlite",
               progress=False)
    off = run(src, RunSettings(models_dir=standin_models, keep_features=False), output=tmp_path / "b.csv",
              store=tmp_path / "b.sqlite", progress=False)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    (a,), (b,) = store_info(tmp_path / "a.sqlite").fingerprints, store_info(tmp_path / "b.sqlite").fingerprints
    assert a.fingerprint == b.fingerprint and a.payload_bytes == b.payload_bytes  # the store's key is unchanged
    assert (a.feature_crops, b.feature_crops) == (1, 0)
    assert kept.results.backend_info["computed"] == off.results.backend_info["computed"] == 3


def test_the_cli_option_no_features(tmp_path: Path, standin_models: Path):
    from deepfaune_plugin.cli import main

    src = _season(tmp_path / "src", 1)
    store = tmp_path / "s.sqlite"
    assert main(["run", str(src), "--models-dir", str(standin_models), "--store", str(store), "--no-features",
                 "-o", str(tmp_path / "a.csv"), "--quiet", "--no-report"]) == 0
    assert store_info(store).fingerprints[0].feature_crops == 0


def test_save_and_read_back_float16_images_and_video_frames(tmp_path: Path):
    store = ResultStore(tmp_path / "s.sqlite")
    photo, video = _item(tmp_path, "a.jpg", 1), _item(tmp_path, "v.jpg", 2)
    image = _classified(seed=1)
    image.features[:2] = [1e6, -1e6]  # beyond float16: clipped to its largest value, never inf
    frames = [_classified(seed=s, frame_number=n) for s, n in ((2, 0), (3, 10), (2, 0))]  # frame 0 repeated
    frames.append(RawResult("v.jpg", frame_number=20, failure="frame could not be decoded"))
    clip = RawResult("v.jpg", frames=frames)
    empty = RawResult("e.jpg", 800, 600)  # no animal: nothing to keep
    assert store.save("fp", [(photo, image), (video, clip), (_item(tmp_path, "e.jpg", 3), empty)]) == 3
    got = read_features(tmp_path / "s.sqlite", "fp")
    order = sorted([(content_hash(photo.path), -1), (content_hash(video.path), 0), (content_hash(video.path), 10)])
    assert list(zip(got.content, got.frame.tolist())) == order
    row = got.content.index(content_hash(photo.path))
    assert got.values[row, :2].tolist() == [65504.0, -65504.0]
    assert np.array_equal(got.values[row, 2:], image.features[2:].astype(np.float16))
    assert np.isfinite(got.values.astype(np.float32)).all()
    # the stored result itself is what it was before features existed (the JSON payload has none)
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        payload = db.execute("SELECT payload FROM raw WHERE relpath='a.jpg'").fetchone()[0]
    assert payload == encode(RawResult(**{**image.__dict__, "features": None}))


def test_a_recomputed_entry_keeps_only_its_new_features(tmp_path: Path):
    store = ResultStore(tmp_path / "s.sqlite")
    item = _item(tmp_path, "a.jpg", 1)
    store.save("fp", [(item, _classified(seed=1))])
    newer = _classified(seed=2)
    newer.detections.insert(0, Detection((0.0, 0.0, 5.0, 5.0), 0.95, ANIMAL, "DF"))
    newer.selected = 1
    store.save("fp", [(item, newer)])
    got = read_features(tmp_path / "s.sqlite", "fp")
    assert got.box.tolist() == [1] and np.array_equal(got.values[0], newer.features.astype(np.float16))


def test_a_store_made_before_keeps_working(tmp_path: Path):
    """A store of before issue 34 (4 KiB pages, no features table): read as it is, then given the table."""
    path = tmp_path / "old.sqlite"
    store = ResultStore(path)
    item = _item(tmp_path, "a.jpg", 1)
    store.save("fp", [(item, _classified(seed=1, relpath="a.jpg"))], features=False)
    store.db.execute("DROP TABLE features")
    store.close()
    assert len(read_features(path, "fp")) == 0 and store_info(path).fingerprints[0].feature_crops == 0
    again = ResultStore(path)
    assert set(again.lookup("fp", [item])) == {"a.jpg"}
    assert again.save("fp", [(item, _classified(seed=1, relpath="a.jpg"))]) == 1
    assert len(read_features(path, "fp")) == 1


def test_a_new_store_has_16_kib_pages(tmp_path: Path):
    ResultStore(tmp_path / "s.sqlite").close()
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 16384


def test_clear_and_prune_take_the_features_with_their_results(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    store = ResultStore(path)
    a, b = _item(tmp_path, "a.jpg", 1), _item(tmp_path, "b.jpg", 2)
    store.save("keep", [(a, _classified(seed=1))])
    store.save("drop", [(b, _classified(seed=2))])
    assert prune(store, keep=["keep"]) == 1
    assert len(read_features(path, "keep")) == 1 and len(read_features(path, "drop")) == 0
    # --max-size counts an entry's features too: 2 KiB of features do not fit in 1 KiB
    assert prune(store, max_bytes=1024) == 1 and len(read_features(path, "keep")) == 0
    store.save("keep", [(a, _classified(seed=1))])
    assert clear_results(store) == 1 and len(read_features(path, "keep")) == 0


def test_damaged_features_are_refused_by_name(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    store = ResultStore(path)
    store.save("fp", [(_item(tmp_path, "a.jpg", 1), _classified(seed=1))])
    store.db.execute("UPDATE features SET data = substr(data, 1, 10)")
    with pytest.raises(StoreError, match=r"s\.sqlite: the features of models fp are damaged"):
        read_features(path, "fp")


def test_models_installed_before_still_run_and_their_reinstall_is_a_new_fingerprint(tmp_path: Path):
    """Stand-ins written as before issue 34 (no `features` output): the run works and keeps no features; written
    again with it, the classifier's file, so the fingerprint, changes and every file is computed again."""
    from deepfaune_plugin.models.cards import load_card
    from deepfaune_plugin.models.graph import save
    from deepfaune_plugin.models.standins import build_small_classifier, write_standins

    models = tmp_path / "models"
    write_standins(models, "1.4")
    installed = InstalledModels(models)
    path = installed.file_for("1.4", "classifier")
    save(build_small_classifier(load_card("1.4"), features=False), path)  # the classifier as it was before
    installed.add_file(path, "classifier", card="1.4", standin=True, source="standin", seed=0, full_size=False)
    installed.save()
    src = _season(tmp_path / "src", 3)
    store = tmp_path / "s.sqlite"
    old = run(src, RunSettings(models_dir=models), output=tmp_path / "a.csv", store=store, progress=False)
    assert old.results.backend_info["computed"] == 3
    (use,) = store_info(store).fingerprints
    assert use.feature_crops == 0 and old.results.raw["cam0/IMG_0000.JPG"].logits is not None
    write_standins(models, "1.4")  # re-installed: now with `features`
    new = run(src, RunSettings(models_dir=models), output=tmp_path / "b.csv", store=store, progress=False)
    assert (new.results.backend_info["computed"], new.results.backend_info.get("reused", 0)) == (3, 0)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()  # the same logits
    assert sorted(u.feature_crops for u in store_info(store).fingerprints) == [0, 1]
