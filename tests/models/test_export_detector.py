"""Detector export: random ultralytics checkpoints -> ONNX (dynamic H, W); boxes after NMS against PyTorch."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
try:  # offline, no auto-install, quiet: as the exporter imports it
    __import__("deepfaune_plugin.models.export.deps", fromlist=["x"]).require_ultralytics()
except Exception as exc:  # ExportDepsMissing
    pytest.skip(str(exc), allow_module_level=True)

from deepfaune_plugin.engine.onnx_models import OnnxDetector  # noqa: E402
import official_checkpoints as fakes  # noqa: E402
from deepfaune_plugin.models.export.checkpoint import CheckpointError  # noqa: E402
from deepfaune_plugin.models.export.detector import export_detector  # noqa: E402
from deepfaune_plugin.models.export.parity import compare_detections  # noqa: E402
from deepfaune_plugin.models.export.probes import scene  # noqa: E402
from deepfaune_plugin.types import Detection  # noqa: E402

SMALL = [scene(480, 640, 1), scene(720, 540, 2)]  # landscape and portrait: 960x736 and 736x960 inputs


def ultralytics_boxes(pt, image: np.ndarray, conf: float) -> list[Detection]:
    """What ultralytics' own predictor keeps (its letterbox, its NMS), for an independent check."""
    from ultralytics import YOLO

    result = YOLO(str(pt), task="detect").predict(image, imgsz=960, conf=conf, iou=0.7, device="cpu", verbose=False)[0]
    b = result.boxes
    return [Detection(tuple(map(float, xyxy)), float(c), int(k) + 1)
            for xyxy, c, k in zip(b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy())]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("det")
    pt = fakes.write_detector_checkpoint(d / "det.pt", "yolov8n.yaml", seed=0, score_bias=-3.0)
    return pt, export_detector(pt, d / "det.onnx", card_conf=0.6, images=SMALL)


def test_contract_and_dynamic_input_size(exported):
    _, result = exported
    model = onnx.load(str(result.path))
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [(i.name, dims(i)[1:]) for i in model.graph.input] == [("images", [3, "height", "width"])]
    assert [(o.name, dims(o)[1:2]) for o in model.graph.output] == [("output0", [7])]
    session = OnnxDetector(result.path).session
    for h, w, anchors in ((736, 960, 14490), (544, 960, 10710), (960, 736, 14490)):
        (out,) = session.run(["output0"], {"images": np.zeros((1, 3, h, w), np.float32)})
        assert out.shape == (1, 7, anchors)  # (h/8 * w/8) + (h/16 * w/16) + (h/32 * w/32)
    assert result.anchors_at_960x736 == 14490


def test_parity_figures(exported):
    _, result = exported
    p, q = result.parity, result.parity_at_card_conf
    assert p.ok and q.ok and p.images == 2 and (p.conf, q.conf) == (0.25, 0.6)
    assert p.boxes > q.boxes > 0  # there were boxes to compare
    assert p.min_iou >= 0.999 and p.max_abs_raw_score < 1e-4 and p.max_abs_raw_box < 0.05


def test_onnx_boxes_match_ultralytics_predictor(exported):
    """Independent of our letterbox and NMS: the ONNX detector gives ultralytics' own answers."""
    pt, result = exported
    detector = OnnxDetector(result.path, conf=0.5)
    compared = 0
    for image in SMALL:
        ours = detector(image)
        theirs = ultralytics_boxes(pt, image, conf=0.5)
        # ultralytics >= 8.3.x rounds the letterbox pad before unscaling; allow that one-pixel difference
        problems, worst_iou, worst_conf = compare_detections(theirs, ours, 0.5, min_iou=0.98)
        assert problems == [] and worst_conf < 1e-4 and len(ours) == len(theirs)
        compared += len(ours)
    assert compared > 5


def test_not_a_detector(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable ultralytics checkpoint"):
        export_detector(tmp_path / "bad.pt", tmp_path / "bad.onnx", images=SMALL[:1])
    assert not (tmp_path / "bad.onnx").exists()


def test_compare_detections_tolerates_ties_not_swaps():
    a = Detection((0, 0, 10, 10), 0.9, 1)
    b = Detection((20, 20, 30, 30), 0.9 - 1e-6, 1)
    c = Detection((40, 40, 50, 50), 0.7, 2)
    assert compare_detections([a, b, c], [b, a, c], 0.5)[0] == []  # tied scores may swap
    problems, _, _ = compare_detections([a, c], [c, a], 0.5)
    assert problems == ["boxes come out in another order (position 0 before 1)"]
    # a box NMS kept on one side only because its overlap sits at the 0.7 threshold: a numerical hair
    edge = Detection((0, 0, 10, 10 / 0.705), 0.8, 1)  # IoU with `a` = 0.705
    assert compare_detections([a, edge], [a], 0.5)[0] == []
    far = Detection((60, 60, 70, 70), 0.8, 1)
    assert compare_detections([a, far], [a], 0.5)[0] == ["box 1 (class 1, conf 0.800000, (60, 60, 70, 70)) has no counterpart"]
    moved = Detection((0, 0, 10, 11), 0.9, 1)
    problems, worst, _ = compare_detections([a], [moved], 0.5)
    assert worst == pytest.approx(100 / 110) and "IoU 0.909091" in problems[0]


@pytest.mark.slow
def test_full_yolov8s(tmp_path):
    pt = fakes.write_detector_checkpoint(tmp_path / "v8s.pt", "yolov8s.yaml", seed=5)
    result = export_detector(pt, tmp_path / "v8s.onnx", card_conf=0.6)
    assert result.parity.ok and result.parity_at_card_conf.ok and result.parity.boxes > 0
    print(f"\nYOLOv8s: {result.parity.as_dict()} at card conf {result.parity_at_card_conf.as_dict()} "
          f"({result.seconds:.0f} s)")
