"""DeepFaune's detectors (ultralytics YOLOv8s, MegaDetector v1000 sorrel) exported to ONNX, with parity.

ultralytics' own exporter writes the graph (dynamic H and W, no NMS in the graph, opset 17): that
is the ONNX contract's `output0` [1, 4+3, A]. The reference is the checkpoint as ultralytics'
predictor runs it (fp32, Conv+BatchNorm fused), fed the very tensor our letterbox makes; both
raw outputs then go through the engine's NMS and the boxes are compared.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deepfaune_plugin.atomic import atomic_output
from deepfaune_plugin.engine.detection import postprocess
from deepfaune_plugin.engine.letterbox import letterbox
from deepfaune_plugin.engine.onnx_models import OnnxDetector

from .checkpoint import CheckpointError
from .deps import require, require_ultralytics
from .parity import DetectorParity, ParityError, compare_detections, max_abs
from .probes import probe_images

torch = require("torch")
OPSET = 17
CLASSES = 3  # animal, person, vehicle
PARITY_CONF = 0.25  # ultralytics' default: enough boxes to compare, even on made-up probe scenes


@dataclass
class DetectorExport:
    path: Path
    architecture: str
    size: int
    anchors_at_960x736: int
    parity: DetectorParity
    parity_at_card_conf: DetectorParity | None
    seconds: float
    notes: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        out = {"architecture": self.architecture, "size": self.size, "anchors_at_960x736": self.anchors_at_960x736,
               "parity": self.parity.as_dict(), "notes": self.notes}
        if self.parity_at_card_conf is not None:
            out["parity_at_card_conf"] = self.parity_at_card_conf.as_dict()
        return out


def load_reference(pt: Path):
    """The detector as ultralytics' predictor runs it on a CPU: float32, fused, eval."""
    require_ultralytics()
    from ultralytics.nn.tasks import load_checkpoint

    try:
        model, _ckpt = load_checkpoint(str(pt), device="cpu", fuse=True)
    except Exception as err:
        raise CheckpointError(f"{pt} is not a readable ultralytics checkpoint ({type(err).__name__}: {err})") from err
    model = model.float().eval()
    head = model.model[-1]
    nc = getattr(head, "nc", None)
    if nc != CLASSES:
        raise CheckpointError(f"{pt} detects {nc} classes; DeepFaune's detectors have 3 (animal, person, vehicle)")
    return model


def _raw(model, tensor: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(tensor))
    while isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, dict):  # end-to-end heads return a dict; the one-to-many output is the contract
        out = out.get("one2many", next(iter(out.values())))
        while isinstance(out, (list, tuple)):
            out = out[0]
    return out.numpy()


def _fix_output_shape(path: Path) -> None:
    """Name the class-row dimension 7 in the graph signature (ultralytics leaves it symbolic)."""
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 3 and not dims[1].HasField("dim_value"):
        dims[1].dim_value = 4 + CLASSES
        onnx.save(model, str(path))


def _ultralytics_export(pt: Path, size: int, opset: int, workdir: Path) -> Path:
    from ultralytics import YOLO

    local = workdir / pt.name
    shutil.copyfile(pt, local)
    try:
        with warnings.catch_warnings():  # torch's notice about its legacy TorchScript exporter, which ultralytics uses
            warnings.simplefilter("ignore", DeprecationWarning)
            produced = YOLO(str(local), task="detect").export(
                format="onnx", imgsz=size, dynamic=True, simplify=False, opset=opset, half=False, nms=False,
                batch=1, device="cpu", verbose=False)
    except Exception as err:
        raise CheckpointError(f"ultralytics could not export {pt.name} ({type(err).__name__}: {err})") from err
    return Path(produced)


def measure_parity(reference, onnx_path: Path, images: Sequence[np.ndarray], size: int, conf: float) -> DetectorParity:
    detector = OnnxDetector(onnx_path, size=size, conf=conf)
    boxes, worst_iou, worst_conf, raw_box, raw_score = 0, 1.0, 0.0, 0.0, 0.0
    problems: list[str] = []
    for k, image in enumerate(images):
        tensor, lb = letterbox(image, size)
        ref = _raw(reference, tensor)
        (got,) = detector.session.run(["output0"], {"images": tensor})
        raw_box = max(raw_box, max_abs(ref[:, :4], got[:, :4]))
        raw_score = max(raw_score, max_abs(ref[:, 4:], got[:, 4:]))
        ref_dets, got_dets = postprocess(ref, lb, conf), postprocess(got, lb, conf)
        bad, low_iou, dconf = compare_detections(ref_dets, got_dets, conf)
        problems += [f"image {k}: {p}" for p in bad]
        boxes += len(ref_dets)
        worst_iou, worst_conf = min(worst_iou, low_iou), max(worst_conf, dconf)
    return DetectorParity(len(images), conf, boxes, worst_iou, worst_conf, raw_box, raw_score, problems)


def export_detector(pt: Path | str, out: Path | str, *, size: int = 960, card_conf: float | None = None,
                    images: Sequence[np.ndarray] | None = None, parity_conf: float = PARITY_CONF,
                    opset: int = OPSET) -> DetectorExport:
    """Export an ultralytics detector checkpoint to `out` (dynamic H, W); refuse it on a parity failure."""
    start = time.monotonic()
    pt, out = Path(pt), Path(out)
    reference = load_reference(pt)
    images = list(images) if images is not None else probe_images()
    with tempfile.TemporaryDirectory(prefix="deepfaune-export-") as work:
        produced = _ultralytics_export(pt, size, opset, Path(work))
        _fix_output_shape(produced)
        with atomic_output(out) as tmp:
            shutil.copyfile(produced, tmp)
            detector = OnnxDetector(tmp, size=size)  # checks the ONNX contract
            probe = np.zeros((1, 3, 736, 960), dtype=np.float32)
            (raw,) = detector.session.run(["output0"], {"images": probe})
            if raw.shape[:2] != (1, 4 + CLASSES):
                raise ParityError(f"exported detector output is {raw.shape}, expected [1, 7, anchors]")
            parity = measure_parity(reference, tmp, images, size, parity_conf)
            at_card = None
            if card_conf is not None:
                at_card = measure_parity(reference, tmp, images, size, card_conf)
            for p in (parity, at_card):
                if p is not None and not p.ok:
                    raise ParityError(f"{pt.name} export does not match PyTorch: {p.as_dict()}")
    return DetectorExport(out, _architecture(reference), size, int(raw.shape[2]), parity, at_card,
                          time.monotonic() - start)


def _architecture(model) -> str:
    """'yolov8s', 'yolo11s', ... from the model's build recipe (ultralytics keeps its yaml)."""
    recipe = getattr(model, "yaml", None)
    name = recipe.get("yaml_file", "") if isinstance(recipe, dict) else ""
    return Path(str(name)).stem or type(model).__name__
