from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from deepfaune_plugin.models.installed import InstalledModels
from deepfaune_plugin.models.standins import write_standins
from imagegen import noise_rgb

ANIMAL, PERSON, VEHICLE = 0, 1, 2  # score rows 4, 5, 6 of output0


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("standins")
    for version in ("1.3", "1.4", "1.5"):
        write_standins(root, version, seed=0)
    return root


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _letterbox(bgr: np.ndarray, size: int = 960) -> tuple[np.ndarray, float, int, int]:
    """Minimal DeepFaune/ultralytics letterbox (deepfaune.md §2): returns NCHW RGB/255, scale, left, top."""
    h, w = bgr.shape[:2]
    r = min(size / h, size / w)
    nw, nh = round(w * r), round(h * r)
    img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    ph, pw = (-nh) % 32, (-nw) % 32
    top, bottom, left, right = round(ph / 2 - 0.1), round(ph / 2 + 0.1), round(pw / 2 - 0.1), round(pw / 2 + 0.1)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0, r, left, top


def _peaks(output: np.ndarray, threshold: float = 0.5) -> list[tuple[int, np.ndarray]]:
    """(class, [cx, cy, w, h]) of every anchor whose best score exceeds the threshold."""
    out = output[0]
    cols = np.flatnonzero(out[4:].max(axis=0) > threshold)
    return [(int(out[4:, c].argmax()), out[:4, c]) for c in cols]


def _photo_with(bgr_colour, rect=(1700, 1100, 600, 500)) -> np.ndarray:
    img = np.ascontiguousarray(noise_rgb(4000, 3000, seed=7)[:, :, ::-1])
    x, y, w, h = rect
    img[y:y + h, x:x + w] = bgr_colour
    return img


def test_manifest_registers_standins(models):
    installed = InstalledModels(models)
    assert installed.verify() == []
    assert installed.versions() == ["1.3", "1.4", "1.5"]
    assert installed.manifest["versions"]["1.3"]["detectors"] == {"DF": "standin-deepfaune-yolov8s_960.onnx"}
    assert sorted(installed.manifest["versions"]["1.4"]["detectors"]) == ["DF", "MDS"]
    for name, info in installed.manifest["files"].items():
        assert name.startswith("standin-") and info["standin"] is True and info["source"] == "standin"
    meta = {p.key: p.value for p in onnx.load(installed.file_for("1.4", "classifier")).metadata_props}
    assert meta["deepfaune_standin"] == "true" and meta["seed"] == "0" and meta["deepfaune_version"] == "1.4"


@pytest.mark.parametrize("version, size, n, bird", [("1.3", 182, 34, False), ("1.4", 182, 38, True),
                                                     ("1.5", 224, 40, True)])
def test_classifier_contract(models, version, size, n, bird):
    sess = _session(InstalledModels(models).file_for(version, "classifier"))
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(float)", ["batch", 3, size, size])
    names = [o.name for o in sess.get_outputs()]
    assert names == (["logits", "bird_logits", "features"] if bird else ["logits", "features"])
    x = np.random.default_rng(1).normal(0, 1, (3, 3, size, size)).astype(np.float32)
    outs = sess.run(None, {"input": x})
    assert [o.shape for o in outs] == ([(3, n), (3, 8), (3, 16)] if bird else [(3, n), (3, 16)])
    assert all(o.dtype == np.float32 for o in outs)


def _narrow(card, **arch):
    """The card with a narrower ViT (the full-size builder's code, at a test's cost)."""
    from dataclasses import replace

    a = replace(card.classifier.architecture, **arch)
    return replace(card, classifier=replace(card.classifier, architecture=a))


@pytest.mark.parametrize("version", ["1.3", "1.4", "1.5"])
def test_issue34_features_leave_the_standin_logits_bit_for_bit(version):
    """Small and (narrowed) full-size stand-ins with and without `features`: same logits to the last bit, and
    the features are what the heads read (the small one's logits are its 16 pooled values through a Gemm)."""
    from deepfaune_plugin.models.cards import load_card
    from deepfaune_plugin.models.standins import build_full_classifier, build_small_classifier

    card = load_card(version)
    size = card.classifier.crop_size
    x = np.random.default_rng(2).normal(0, 1, (3, 3, size, size)).astype(np.float32)
    narrow = _narrow(card, embed_dim=128, heads=2, depth=2, mlp_dim=256)
    for build, c, width in ((build_small_classifier, card, 16), (build_full_classifier, narrow, 128)):
        old = _run(build(c, seed=3, features=False), x)
        new = _run(build(c, seed=3), x)
        assert len(new) == len(old) + 1 and new[-1].shape == (3, width)
        for a, b in zip(old, new):
            assert np.array_equal(a, b)
        assert np.abs(new[0]).max() > 0.1 and np.abs(new[-1][1:] - new[-1][0]).max() > 1e-3
    small = build_small_classifier(card, seed=3)
    logits, *_, features = _run(small, x)
    gemm = next(n for n in small.graph.node if n.output[0] == "logits")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in small.graph.initializer}
    assert np.allclose(features @ inits[gemm.input[1]].T + inits[gemm.input[2]], logits, atol=1e-5)


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})


@pytest.mark.parametrize("mode", ["DF", "MDS"])
def test_detector_contract(models, mode):
    sess = _session(InstalledModels(models).file_for("1.4", "detector", mode))
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("images", "tensor(float)", ["batch", 3, "height", "width"])
    assert [o.name for o in sess.get_outputs()] == ["output0"]
    for (h, w), anchors in (((736, 960), 23 * 30), ((960, 544), 30 * 17)):
        (out,) = sess.run(None, {"images": np.full((1, 3, h, w), 114 / 255, np.float32)})
        assert out.shape == (1, 7, anchors) and out.dtype == np.float32
        assert out[0, 4:].max() < 0.001  # the letterbox grey is no marker


def test_same_seed_gives_identical_files(tmp_path, models):
    write_standins(tmp_path, "1.4", seed=0)
    written = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert len(written) == 3
    for name in written:
        assert (tmp_path / name).read_bytes() == (models / name).read_bytes(), name


def test_different_seed_gives_different_models(tmp_path, models):
    write_standins(tmp_path, "1.4", seed=1)
    x = np.random.default_rng(2).normal(0, 1, (2, 3, 182, 182)).astype(np.float32)
    a = _session(InstalledModels(models).file_for("1.4", "classifier")).run(None, {"input": x})
    b = _session(InstalledModels(tmp_path).file_for("1.4", "classifier")).run(None, {"input": x})
    assert np.abs(a[0] - b[0]).max() > 0.5 and np.abs(a[1] - b[1]).max() > 0.5
    assert (tmp_path / "standin-deepfaune-yolov8s_960.onnx").read_bytes() != (
        models / "standin-deepfaune-yolov8s_960.onnx").read_bytes()


def test_classifier_confidence_spreads_on_ordinary_images(models):
    rng = np.random.default_rng(11)
    images = []
    for _ in range(24):  # smooth colour fields with a little texture, like crops of natural scenes
        field = cv2.resize(rng.uniform(0, 1, (5, 5, 3)).astype(np.float32), (182, 182), interpolation=cv2.INTER_CUBIC)
        field = np.clip(field + rng.normal(0, 0.05, field.shape), 0, 1)
        images.append(((field - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1))
    logits, *_ = _session(InstalledModels(models).file_for("1.4", "classifier")).run(
        None, {"input": np.asarray(images, np.float32)})
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    top = (p / p.sum(axis=1, keepdims=True)).max(axis=1)
    assert top.min() < 0.6 and top.max() > 0.95
    assert len(set(logits.argmax(axis=1))) >= 5  # not one class for everything


def test_red_rectangle_is_one_animal_at_its_place(models):
    x, r, left, top = _letterbox(_photo_with((0, 0, 255)))
    assert x.shape == (1, 3, 736, 960) and top == 8
    (out,) = _session(InstalledModels(models).file_for("1.4", "detector", "DF")).run(None, {"images": x})
    peaks = _peaks(out)
    assert len(peaks) == 1
    cls, (cx, cy, w, h) = peaks[0]
    assert cls == ANIMAL
    assert abs(cx - ((1700 + 300) * r + left)) <= 64 and abs(cy - ((1100 + 250) * r + top)) <= 64
    assert w == h and abs(w - np.sqrt(600 * r * 500 * r)) < 8  # side = sqrt(blob area)


@pytest.mark.parametrize("bgr, expected", [((0, 255, 0), PERSON), ((255, 0, 0), VEHICLE)])
def test_green_is_a_person_and_blue_a_vehicle(models, bgr, expected):
    x, *_ = _letterbox(_photo_with(bgr))
    (out,) = _session(InstalledModels(models).file_for("1.4", "detector", "MDS")).run(None, {"images": x})
    assert [cls for cls, _ in _peaks(out)] == [expected]


def test_noise_and_small_blobs_stay_below_thresholds(models):
    sess = _session(InstalledModels(models).file_for("1.4", "detector", "DF"))
    (out,) = sess.run(None, {"images": _letterbox(_photo_with((120, 120, 120)))[0]})
    assert out[0, 4:].max() < 0.05
    colour_noise = np.random.default_rng(3).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    (out,) = sess.run(None, {"images": _letterbox(colour_noise)[0]})
    assert out[0, 4:].max() < 0.05
    # 2x2 cells (267 px of a 4000 px photo -> 64 input px) is detected; 1x1 cell is not
    (out,) = sess.run(None, {"images": _letterbox(_photo_with((0, 0, 255), (1000, 1000, 267, 267)))[0]})
    assert out[0, 4].max() > 0.9
    (out,) = sess.run(None, {"images": _letterbox(_photo_with((0, 0, 255), (1000, 1000, 134, 134)))[0]})
    assert out[0, 4].max() < 0.05


@pytest.mark.slow
def test_full_size_standins(tmp_path):
    """Real ViT-L/14 and YOLOv8s shapes and compute (about a minute, 1.3 GB on disk)."""
    write_standins(tmp_path, "1.4", seed=0, full_size=True)
    installed = InstalledModels(tmp_path)
    assert installed.verify() == []
    cls_path = installed.file_for("1.4", "classifier")
    assert cls_path.name == "standin-full-deepfaune-vit_large_patch14_dinov2.lvd142m.v4.onnx"
    assert cls_path.stat().st_size > 1_200_000_000  # ~304 M float32 parameters
    logits, bird, features = _session(cls_path).run(None, {"input": np.zeros((2, 3, 182, 182), np.float32)})
    assert logits.shape == (2, 38) and bird.shape == (2, 8) and np.isfinite(logits).all()
    assert features.shape == (2, 1024)
    det = _session(installed.file_for("1.4", "detector", "DF"))
    x, *_ = _letterbox(_photo_with((0, 0, 255)))
    (out,) = det.run(None, {"images": x})
    assert out.shape == (1, 7, 92 * 120 + 46 * 60 + 23 * 30)  # strides 8, 16, 32
    peaks = _peaks(out)
    assert len(peaks) == 1 and peaks[0][0] == ANIMAL
    assert out[0, 4:].max() <= 1.0
