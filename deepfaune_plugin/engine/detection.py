"""Detector post-processing, box selection and the DeepFaune detector modes.

``postprocess`` is ultralytics 8.3.73's ``non_max_suppression`` + ``scale_boxes`` (the versions
DeepFaune 1.4.1 pins) in numpy, float32 throughout, because a box edge that moves by one ulp can
move a crop by one pixel.  ``combine`` is DeepFaune's ``YOLOEnsemble``: backstop or pooled.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..types import ANIMAL, Detection
from .letterbox import Letterbox

MAX_WH = 7680  # ultralytics' per-class box offset for class-aware NMS
MAX_NMS = 30000  # ultralytics' cap on boxes fed to NMS
POOL_IOU = 0.7  # DeepFaune's NMS threshold when pooling DF and MDS boxes
_F32 = np.float32


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """torchvision.ops.nms on CPU: indices kept, by descending score (stable on ties).

    A box is suppressed when its IoU with a kept box is strictly greater than ``iou``; areas and
    IoU are computed in float32 in the same order as torchvision's kernel.
    """
    boxes = np.asarray(boxes, dtype=_F32)
    scores = np.asarray(scores, dtype=_F32)
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, k]) for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    zero = _F32(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        for pos, i in enumerate(order):
            if suppressed[i]:
                continue
            keep.append(i)
            rest = order[pos + 1:]
            rest = rest[~suppressed[rest]]
            if not len(rest):
                continue
            w = np.maximum(zero, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
            h = np.maximum(zero, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
            inter = w * h
            ovr = inter / (areas[i] + areas[rest] - inter)
            suppressed[rest[ovr.astype(np.float64) > iou]] = True
    return np.asarray(keep, dtype=np.int64)


def _scale_boxes(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Input pixels -> original pixels, as ultralytics 8.3.73 ``scale_boxes`` does.

    That version derives the pad from ``orig * gain`` unrounded (later versions round it first),
    which can differ by one input pixel from the pad the letterbox actually applied; DeepFaune
    lives with that, so do we.
    """
    h, w = lb.orig_h, lb.orig_w
    gain = min(lb.input_h / h, lb.input_w / w)
    pad_x = round((lb.input_w - w * gain) / 2 - 0.1)
    pad_y = round((lb.input_h - h * gain) / 2 - 0.1)
    out = boxes.copy()
    out[:, [0, 2]] -= _F32(pad_x)
    out[:, [1, 3]] -= _F32(pad_y)
    out /= _F32(gain)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], _F32(0), _F32(w))
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], _F32(0), _F32(h))
    return out


def postprocess(output: np.ndarray, lb: Letterbox, conf: float, iou: float = 0.7, max_det: int = 300,
                source: str = "DF") -> list[Detection]:
    """Raw detector output [1, 4+nc, A] (cx, cy, w, h, class scores) -> detections in original pixels.

    One label per anchor (its best class), kept when that score > conf; class-aware NMS by
    offsetting boxes by class * 7680; at most ``max_det`` boxes, by descending confidence.
    """
    pred = np.asarray(output, dtype=_F32)
    if pred.ndim == 3:
        if pred.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got output shape {pred.shape}")
        pred = pred[0]
    if pred.ndim != 2 or pred.shape[0] < 5:
        raise ValueError(f"expected detector output [1, 4+nc, anchors], got shape {np.shape(output)}")
    pred = pred.T  # anchors x (4 + nc)
    cls_scores = pred[:, 4:]
    best = cls_scores.max(axis=1)
    cls = cls_scores.argmax(axis=1)  # first maximum on ties, like torch.max
    keep = best > _F32(conf)
    if not keep.any():
        return []
    xywh, best, cls = pred[keep, :4], best[keep], cls[keep]
    half = xywh[:, 2:] / _F32(2)
    boxes = np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)
    if len(boxes) > MAX_NMS:
        top = np.argsort(-best, kind="stable")[:MAX_NMS]
        boxes, best, cls = boxes[top], best[top], cls[top]
    offset = cls.astype(_F32)[:, None] * _F32(MAX_WH)
    kept = nms(boxes + offset, best, iou)[:max_det]
    scaled = _scale_boxes(boxes[kept], lb)
    return [
        Detection((float(box[0]), float(box[1]), float(box[2]), float(box[3])), float(score), int(c) + 1, source)
        for box, score, c in zip(scaled, best[kept], cls[kept])
    ]


def select_box(dets: Sequence[Detection]) -> int | None:
    """Index of the box DeepFaune keeps: the most confident animal, else the most confident box.

    Lists from ``postprocess``/``combine`` are sorted by confidence, so this is DeepFaune's "first
    animal box, else box 0"; ties go to the earlier box.
    """
    if not dets:
        return None
    animals = [i for i, d in enumerate(dets) if d.category == ANIMAL]
    pool = animals or range(len(dets))
    return max(pool, key=lambda i: (dets[i].conf, -i))


def needs_mds(mode: str, df: Sequence[Detection] | None) -> bool:
    """Whether the MegaDetector must run for this image (DFbsMDS only when DF kept nothing)."""
    if mode == "DF":
        return False
    if mode in ("MDS", "DFMDS"):
        return True
    if mode == "DFbsMDS":
        if df is None:
            raise ValueError("DFbsMDS: run DF first to know whether the MDS backstop is needed")
        return len(df) == 0
    raise ValueError(f"unknown detector mode {mode!r}")


def _pool(dets: list[Detection], iou: float) -> list[Detection]:
    """torchvision.ops.batched_nms over pooled boxes, classes from the detection categories."""
    if not dets:
        return []
    boxes = np.array([d.box for d in dets], dtype=_F32)
    scores = np.array([d.conf for d in dets], dtype=_F32)
    classes = np.array([d.category - 1 for d in dets], dtype=_F32)
    if boxes.size > 4000:  # torchvision switches to per-class NMS for large CPU inputs
        kept = np.concatenate([np.flatnonzero(classes == c)[nms(boxes[classes == c], scores[classes == c], iou)]
                               for c in np.unique(classes)])
        kept = kept[np.argsort(-scores[kept], kind="stable")]
    else:  # the coordinate trick: offset each class beyond the largest coordinate
        offsets = classes * (boxes.max() + _F32(1))
        kept = nms(boxes + offsets[:, None], scores, iou)
    return [dets[i] for i in kept]


def combine(mode: str, df: list[Detection] | None, mds: list[Detection] | None) -> list[Detection]:
    """The detections DeepFaune keeps for an image under a detector mode.

    Each list is already filtered at its own detector's confidence (DF 0.6, MDS 0.5); DFMDS pools
    them (DF first), runs class-aware NMS at IoU 0.7 and keeps them by descending confidence, with
    no second cap on the count.
    """
    def need(dets: list[Detection] | None, name: str) -> list[Detection]:
        if dets is None:
            raise ValueError(f"detector mode {mode}: the {name} detections are missing")
        return dets

    if mode == "DF":
        return list(need(df, "DF"))
    if mode == "MDS":
        return list(need(mds, "MDS"))
    if mode == "DFbsMDS":
        first = need(df, "DF")
        return list(first) if first else list(need(mds, "MDS"))
    if mode == "DFMDS":
        return _pool(list(need(df, "DF")) + list(need(mds, "MDS")), POOL_IOU)
    raise ValueError(f"unknown detector mode {mode!r}")
