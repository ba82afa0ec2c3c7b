"""Issue 17 item 2/3: the torch-free YOLOv8 detector graph against ultralytics' own predictor and its ONNX export,
on random checkpoints in the official format. The checks that need no torch run everywhere."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from deepfaune_plugin.models.convert.read import ConversionError
from deepfaune_plugin.models.convert.torchfree_pickle import InertRecord
from deepfaune_plugin.models.convert.yolo import build_detector, convert_detector


def record(name: str, **state) -> InertRecord:
    kind = type(name.rsplit(".", 1)[-1], (InertRecord,), {"qualified_name": name})
    rec = kind()
    rec.__setstate__(state)
    return rec


def test_a_layer_kind_it_does_not_build_is_refused_by_name():
    odd = record("ultralytics.nn.modules.block.C2fAttn", f=-1, i=0)
    detect = record("ultralytics.nn.modules.head.Detect", f=[0], i=1, nc=3)
    model = record("ultralytics.nn.tasks.DetectionModel",
                   _modules={"model": record("torch.nn.modules.container.Sequential",
                                             _modules={"0": odd, "1": detect})})
    with pytest.raises(ConversionError, match=r"det\.pt layer 0: C2fAttn, which the torch-free converter does not "
                                              r"build .*use --converter torch"):
        build_detector({"model": model, "ema": None}, where="det.pt")
    with pytest.raises(ConversionError, match=r"det\.pt is not an ultralytics checkpoint \(no 'model' or 'ema'"):
        build_detector({"state_dict": {}}, where="det.pt")


def test_a_pickle_that_runs_code_is_refused_before_any_graph(tmp_path: Path):
    import os

    from deepfaune_plugin.models.convert.torchfree_pickle import UnsafeCheckpointError

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    path = tmp_path / "det.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"model": Evil()}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        convert_detector(path, tmp_path / "det.onnx")
    assert not (tmp_path / "ran").exists() and not (tmp_path / "det.onnx").exists()


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    import official_checkpoints

    d = tmp_path_factory.mktemp("convert_yolo")
    return d, official_checkpoints.write_detector_checkpoint(d / "v8n.pt", "yolov8n.yaml", seed=0, score_bias=-3.0)


def test_torch_free_detector_matches_ultralytics_after_nms(official):
    from deepfaune_plugin.models.export.detector import load_reference, measure_parity
    from deepfaune_plugin.models.export.probes import probe_images

    d, pt = official
    free = convert_detector(pt, d / "free.onnx")
    parity = measure_parity(load_reference(pt), free, probe_images()[:2], 960, 0.25)
    assert parity.ok and parity.boxes > 50 and parity.mismatches == []
    assert parity.min_iou >= 0.9999 and parity.max_abs_raw_score < 1e-4 and parity.max_abs_raw_box < 0.05


def test_torch_free_detector_keeps_height_and_width_dynamic(official):
    d, pt = official
    session = ort.InferenceSession(str(convert_detector(pt, d / "dyn.onnx")), providers=["CPUExecutionProvider"])
    for h, w, anchors in ((736, 960, 14490), (960, 736, 14490), (544, 960, 10710)):
        (out,) = session.run(["output0"], {"images": np.zeros((1, 3, h, w), np.float32)})
        assert out.shape == (1, 7, anchors)  # (h/8 * w/8) + (h/16 * w/16) + (h/32 * w/32)


@pytest.mark.slow
def test_full_size_yolov8s_torch_free_against_the_torch_export(tmp_path: Path):
    pytest.importorskip("ultralytics")
    import official_checkpoints

    from deepfaune_plugin.models.export.detector import export_detector, load_reference, measure_parity
    from deepfaune_plugin.models.export.probes import probe_images

    pt = official_checkpoints.write_detector_checkpoint(tmp_path / "v8s.pt", "yolov8s.yaml", seed=5)
    free = convert_detector(pt, tmp_path / "free.onnx")
    torch_made = export_detector(pt, tmp_path / "torch.onnx").path
    reference, images = load_reference(pt), probe_images()
    ours, theirs = (measure_parity(reference, p, images, 960, 0.25) for p in (free, torch_made))
    assert ours.ok and ours.boxes == theirs.boxes and ours.min_iou >= 0.9999
