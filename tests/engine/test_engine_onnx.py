"""ONNX Runtime sessions: the contract is checked at load, planted boxes and logits come back."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepfaune_plugin.engine.onnx_models import (
    ModelContractError, OnnxClassifier, OnnxDetector, session_options)
from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.types import ANIMAL, VEHICLE

OPSET = [helper.make_opsetid("", 17)]


def save(graph, path):
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def detector_graph(anchors: np.ndarray, out_name="output0", in_name="images", hw=("H", "W")):
    """A detector whose output is the planted [1, 7, A] array (0 * mean(input) keeps the input used)."""
    planted = numpy_helper.from_array(anchors.astype(np.float32), "planted")
    zero = numpy_helper.from_array(np.array(0, np.float32), "zero")
    nodes = [
        helper.make_node("ReduceMean", [in_name], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["planted", "nothing"], [out_name]),
    ]
    return helper.make_graph(
        nodes, "detector",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, [1, 3, *hw])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(anchors.shape))],
        initializer=[planted, zero])


def classifier_graph(size=8, n=5, bird=True, logits_name="logits", features=False, features_rank=2):
    """logits = mean over pixels of each channel @ W; bird_logits likewise with an 8-column matrix; `features`
    (issue 34): the 3 pooled values the heads read."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(3, n)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(3, 8)).astype(np.float32), "wb")]
    nodes = [helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["pooled", "w"], [logits_name])]
    outputs = [helper.make_tensor_value_info(logits_name, TensorProto.FLOAT, ["B", n])]
    if bird:
        nodes.append(helper.make_node("MatMul", ["pooled", "wb"], ["bird_logits"]))
        outputs.append(helper.make_tensor_value_info("bird_logits", TensorProto.FLOAT, ["B", 8]))
    if features:
        nodes.append(helper.make_node("Identity", ["pooled"], ["features"]))
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["B", 3][:features_rank]))
    graph = helper.make_graph(nodes, "classifier",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 3, size, size])],
                              outputs, initializer=inits)
    return graph, numpy_helper.to_array(inits[0]), numpy_helper.to_array(inits[1])


def planted_anchors():
    # 4000x3000 photo -> 960x736 input (pad 8 above/below, gain 0.24).
    return np.array([
        (480, 368, 240, 120, 0.90, 0.0, 0.00),  # animal
        (700, 200, 96, 48, 0.05, 0.0, 0.75),  # vehicle
        (100, 100, 20, 20, 0.30, 0.0, 0.00),  # below threshold
    ], np.float32).T[None]


def test_session_options():
    opts = session_options(3)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (3, 1)
    assert session_options(None).intra_op_num_threads >= 1


def test_detector_returns_planted_boxes(tmp_path):
    path = save(detector_graph(planted_anchors(), hw=("H", "W")), tmp_path / "det.onnx")
    detector = OnnxDetector(path, size=960, conf=0.6, source="DF", threads=1)
    assert detector.prepare(np.zeros((3000, 4000, 3), np.uint8))[0].shape == (1, 3, 736, 960)
    assert detector.prepare(np.zeros((4000, 3000, 3), np.uint8))[0].shape == (1, 3, 960, 736)
    dets = detector(np.zeros((3000, 4000, 3), np.uint8))
    assert [(d.category, d.conf) for d in dets] == [(ANIMAL, float(np.float32(0.9))),
                                                     (VEHICLE, float(np.float32(0.75)))]
    assert dets[0].box == pytest.approx((1500.0, 1250.0, 2500.0, 1750.0), rel=1e-6)
    # (652, 176, 748, 224) -> y minus 8 -> / 0.24
    assert dets[1].box == pytest.approx((2716.6667, 700.0, 3116.6667, 900.0), rel=1e-6)


def test_detector_wrong_output_name_names_the_file(tmp_path):
    path = save(detector_graph(planted_anchors(), out_name="boxes"), tmp_path / "wrong_out.onnx")
    with pytest.raises(ModelContractError, match=r"wrong_out\.onnx.*'output0' missing.*boxes") as err:
        OnnxDetector(path)
    assert isinstance(err.value, DeepfauneError) and err.value.path == str(path)


def test_detector_contract_checks(tmp_path):
    wrong_in = save(detector_graph(planted_anchors(), in_name="x"), tmp_path / "wrong_in.onnx")
    with pytest.raises(ModelContractError, match="input 'images' missing"):
        OnnxDetector(wrong_in)
    static = save(detector_graph(planted_anchors(), hw=(960, 960)), tmp_path / "static.onnx")
    with pytest.raises(ModelContractError, match="dynamic height and width"):
        OnnxDetector(static)
    rows = np.zeros((1, 84, 10), np.float32)  # a COCO model: 4 + 80 rows
    with pytest.raises(ModelContractError, match="7 rows"):
        OnnxDetector(save(detector_graph(rows), tmp_path / "coco.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelContractError, match="junk.onnx: not a loadable ONNX model"):
        OnnxDetector(junk)
    with pytest.raises(FileNotFoundError):
        OnnxDetector(tmp_path / "absent.onnx")


def test_classifier_logits_and_bird_head(tmp_path):
    graph, w, wb = classifier_graph(size=8, n=5, bird=True)
    clf = OnnxClassifier(save(graph, tmp_path / "clf.onnx"), threads=1)
    assert (clf.size, clf.num_classes, clf.has_bird_head) == (8, 5, True)
    batch = np.random.default_rng(2).normal(size=(2, 3, 8, 8)).astype(np.float32)
    logits, bird = clf(batch)
    pooled = batch.mean(axis=(2, 3))
    assert logits.shape == (2, 5) and bird.shape == (2, 8)
    np.testing.assert_allclose(logits, pooled @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bird, pooled @ wb, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[B,3,8,8\]"):
        clf(np.zeros((1, 3, 9, 9), np.float32))


def test_classifier_without_bird_head_and_dynamic_size(tmp_path):
    graph, _, _ = classifier_graph(size="S", n=4, bird=False)
    path = save(graph, tmp_path / "dyn.onnx")
    with pytest.raises(ModelContractError, match="dynamic"):
        OnnxClassifier(path)
    clf = OnnxClassifier(path, size=6)
    assert (clf.size, clf.num_classes, clf.has_bird_head) == (6, 4, False)
    logits, bird = clf(np.ones((3, 3, 6, 6), np.float32))
    assert logits.shape == (3, 4) and bird is None


def test_issue34_classify_gives_the_features_when_the_model_has_them(tmp_path):
    graph, w, wb = classifier_graph(size=8, n=5, bird=True, features=True)
    clf = OnnxClassifier(save(graph, tmp_path / "clf.onnx"), threads=1)
    assert clf.has_features
    batch = np.random.default_rng(2).normal(size=(2, 3, 8, 8)).astype(np.float32)
    out = clf.classify(batch)
    pooled = batch.mean(axis=(2, 3))
    np.testing.assert_allclose(out.features, pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.logits, pooled @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.bird_logits, pooled @ wb, rtol=1e-5, atol=1e-6)
    logits, bird = clf(batch)  # the two-output call is unchanged
    assert np.array_equal(logits, out.logits) and np.array_equal(bird, out.bird_logits)


def test_issue34_a_model_without_features_still_classifies(tmp_path):
    """A classifier installed before issue 34 (no `features` output): same answers, features None."""
    graph, w, _ = classifier_graph(size=8, n=5, bird=False)
    clf = OnnxClassifier(save(graph, tmp_path / "old.onnx"), threads=1)
    out = clf.classify(np.ones((2, 3, 8, 8), np.float32))
    assert not clf.has_features and out.features is None and out.bird_logits is None
    np.testing.assert_allclose(out.logits, np.ones((2, 3)) @ w, rtol=1e-5)


def test_issue34_features_of_the_wrong_rank_are_refused_by_name(tmp_path):
    graph, _, _ = classifier_graph(size=8, n=5, bird=False, features=True, features_rank=1)
    nodes = list(graph.node)
    nodes[-1] = helper.make_node("ReduceMean", ["pooled"], ["features"], axes=[1], keepdims=0)
    graph = helper.make_graph(nodes, "classifier", list(graph.input), list(graph.output), list(graph.initializer))
    path = save(graph, tmp_path / "bad.onnx")
    with pytest.raises(ModelContractError, match=r"bad\.onnx: output 'features' must have rank 2"):
        OnnxClassifier(path)


def test_classifier_contract_checks(tmp_path):
    graph, _, _ = classifier_graph(logits_name="scores", bird=False)
    with pytest.raises(ModelContractError, match=r"bad_clf\.onnx.*'logits' missing"):
        OnnxClassifier(save(graph, tmp_path / "bad_clf.onnx"))
    graph, _, _ = classifier_graph(size=8)
    with pytest.raises(ModelContractError, match="8 px but size=182"):
        OnnxClassifier(save(graph, tmp_path / "c8.onnx"), size=182)
