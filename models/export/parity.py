"""Numbers that say an ONNX model computes what the PyTorch model computes.

Classifier: max |delta logit| (and bird logit) between onnxruntime and PyTorch on the same crops.
Detector: after the same letterbox and the same NMS, the same boxes (IoU), classes and order;
two boxes whose scores tie within `tie` may come out in either order.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.types import Detection

LOGIT_TOLERANCE = 1e-4
IOU_TOLERANCE = 0.999


class ParityError(DeepfauneError):
    """The exported model does not compute what the PyTorch model computes."""


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ParityError(f"output shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 1.0 if union <= 0 and inter == 0 and tuple(a) == tuple(b) else (inter / union if union > 0 else 0.0)


@dataclass
class ClassifierParity:
    probes: int
    max_abs_logit: float
    max_abs_bird_logit: float | None
    max_abs_logit_baked: float  # PyTorch with the baked (static) position table vs DeepFaune's dynamic model
    top1_agree: float
    tolerance: float = LOGIT_TOLERANCE
    max_abs_feature: float | None = None  # the class token output (issue 34); None: not compared

    @property
    def ok(self) -> bool:
        worst = max(self.max_abs_logit, self.max_abs_bird_logit or 0.0, self.max_abs_logit_baked,
                    self.max_abs_feature or 0.0)
        return worst <= self.tolerance

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def classifier_parity(ref_logits: np.ndarray, got_logits: np.ndarray, ref_bird: np.ndarray | None,
                      got_bird: np.ndarray | None, baked_logits: np.ndarray | None = None,
                      ref_features: np.ndarray | None = None,
                      got_features: np.ndarray | None = None) -> ClassifierParity:
    """The figures; features are compared when both sides give them (the graph's `features` output)."""
    if (ref_bird is None) != (got_bird is None):
        raise ParityError("one model has bird logits and the other has not")
    if ref_features is not None and got_features is None:
        raise ParityError("the exported model has no 'features' output (the class token)")
    return ClassifierParity(
        probes=int(len(ref_logits)),
        max_abs_logit=max_abs(ref_logits, got_logits),
        max_abs_bird_logit=None if ref_bird is None else max_abs(ref_bird, got_bird),
        max_abs_logit_baked=0.0 if baked_logits is None else max_abs(ref_logits, baked_logits),
        top1_agree=float(np.mean(np.argmax(ref_logits, 1) == np.argmax(got_logits, 1))) if len(ref_logits) else 1.0,
        max_abs_feature=None if ref_features is None else max_abs(ref_features, got_features),
    )


@dataclass
class DetectorParity:
    images: int
    conf: float
    boxes: int  # boxes compared (PyTorch side)
    min_iou: float
    max_abs_conf: float
    max_abs_raw_box: float  # raw output, input pixels
    max_abs_raw_score: float
    mismatches: list[str] = field(default_factory=list)
    tolerance_iou: float = IOU_TOLERANCE

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.min_iou >= self.tolerance_iou

    def as_dict(self) -> dict:
        out = {**asdict(self), "ok": self.ok}
        if len(self.mismatches) > 10:
            out["mismatches"] = self.mismatches[:10] + [f"... and {len(self.mismatches) - 10} more"]
        return out


def _marginal(d: Detection, kept: Sequence[Detection], nms_iou: float, margin: float) -> bool:
    """Whether NMS's decision on `d` hangs on a hair: it overlaps a kept box of its class at ~nms_iou."""
    return any(k.category == d.category and k.conf >= d.conf - 1e-4 and abs(iou(k.box, d.box) - nms_iou) <= margin
               for k in kept)


def compare_detections(ref: Sequence[Detection], got: Sequence[Detection], conf: float,
                       tie: float = 1e-4, min_iou: float = IOU_TOLERANCE, nms_iou: float = 0.7,
                       max_det: int = 300, margin: float = 0.01) -> tuple[list[str], float, float]:
    """(mismatches, worst IoU, worst |delta conf|) between two NMS outputs of one image.

    Differences a last-digit change can cause are not mismatches: a box scored within `tie` of the
    threshold, boxes whose scores tie within `tie` trading places, a box whose suppression hangs on
    an overlap within `margin` of the NMS threshold, and boxes cut by the `max_det` cap.
    """
    problems: list[str] = []
    got = list(got)
    used = [False] * len(got)
    worst_iou, worst_conf = 1.0, 0.0
    mapping: list[int] = []  # positions in `got` of the matched boxes, in `ref` order
    floor = min((g.conf for g in got), default=0.0) if len(got) >= max_det else 0.0

    def excused(d: Detection, other: Sequence[Detection]) -> bool:
        return d.conf <= conf + tie or d.conf <= floor + tie or _marginal(d, other, nms_iou, margin)

    for i, d in enumerate(ref):
        candidates = [j for j, g in enumerate(got)
                      if not used[j] and g.category == d.category and abs(g.conf - d.conf) <= tie]
        if not candidates:
            if not excused(d, got):
                problems.append(f"box {i} (class {d.category}, conf {d.conf:.6f}, "
                                f"{tuple(round(v, 1) for v in d.box)}) has no counterpart")
            continue
        j = max(candidates, key=lambda k: (iou(d.box, got[k].box), -abs(k - i)))
        overlap = iou(d.box, got[j].box)
        if overlap < min_iou and excused(d, got):
            continue
        used[j] = True
        mapping.append(j)
        if overlap < min_iou:
            problems.append(f"box {i} (class {d.category}) overlaps its counterpart with IoU {overlap:.6f}")
        worst_iou = min(worst_iou, overlap)
        worst_conf = max(worst_conf, abs(d.conf - got[j].conf))
    for a, b in zip(mapping, mapping[1:]):
        if a > b and abs(got[a].conf - got[b].conf) > tie:
            problems.append(f"boxes come out in another order (position {b} before {a})")
            break
    floor_ref = min((d.conf for d in ref), default=0.0) if len(ref) >= max_det else 0.0
    for j, g in enumerate(got):
        if not used[j] and g.conf > conf + tie and g.conf > floor_ref + tie and not _marginal(g, ref, nms_iou, margin):
            problems.append(f"extra box at position {j} (class {g.category}, conf {g.conf:.6f})")
    return problems, worst_iou, worst_conf
