"""Detector post-processing (ultralytics 8.3.73 NMS + scale_boxes), box selection, detector modes."""
from __future__ import annotations

import numpy as np
import pytest

from deepfaune_plugin.engine.detection import combine, needs_mds, nms, postprocess, select_box
from deepfaune_plugin.engine.letterbox import plan_letterbox
from deepfaune_plugin.types import ANIMAL, PERSON, VEHICLE, Detection

F = np.float32


def raw(*anchors):
    """Detector output [1, 7, A] from anchors (cx, cy, w, h, animal, person, vehicle)."""
    return np.array(anchors, dtype=np.float32).T[None]


def f32(x: float) -> float:
    return float(np.float32(x))


# A 4000x3000 photo: input 960x736, pad 8 above and below, gain 0.24.
LB_4000 = plan_letterbox(3000, 4000, 960)


def test_postprocess_filters_nms_and_scales_back():
    out = raw(
        (480, 368, 240, 120, 0.90, 0.00, 0.00),  # animal, kept
        (484, 370, 240, 120, 0.80, 0.00, 0.00),  # same animal, IoU ~0.95 -> suppressed
        (480, 368, 240, 120, 0.00, 0.85, 0.00),  # person on the same box: other class, kept
        (700, 100, 50, 50, 0.00, 0.00, 0.50),  # vehicle below 0.6 -> dropped
        (10, 12, 40, 20, 0.70, 0.00, 0.00),  # animal in the top-left pad corner -> clipped
        (900, 600, 30, 30, 0.60, 0.00, 0.00),  # exactly at the threshold: kept only if > 0.6
    )
    dets = postprocess(out, LB_4000, conf=0.6)
    assert [d.category for d in dets] == [ANIMAL, PERSON, ANIMAL]
    assert [d.conf for d in dets] == [f32(0.9), f32(0.85), f32(0.7)]
    # (360, 308, 600, 428) in the input; minus the 8 px pad, divided by 0.24.
    assert dets[0].box == pytest.approx((1500.0, 1250.0, 2500.0, 1750.0), rel=1e-6)
    assert dets[1].box == dets[0].box
    # (-10, 2, 30, 22) -> (-41.7, -25, 125, 58.33) -> clipped at 0.
    assert dets[2].box == pytest.approx((0.0, 0.0, 125.0, 58.333332), rel=1e-6)
    assert {d.source for d in dets} == {"DF"}


def test_postprocess_one_label_per_box_and_clip_to_image():
    out = raw(
        (950, 700, 40, 80, 0.65, 0.70, 0.10),  # best class person (0.70), the animal score is ignored
    )
    (det,) = postprocess(out, LB_4000, conf=0.6, source="MDS")
    assert (det.category, det.conf, det.source) == (PERSON, f32(0.70), "MDS")
    # (930, 660, 970, 740) -> y minus 8 -> /0.24; x2 = 4041.7 and y2 = 3050 clipped to 4000 x 3000.
    assert det.box == pytest.approx((3875.0, 2716.6667, 4000.0, 3000.0), rel=1e-6)


def test_postprocess_nothing_above_threshold():
    out = raw((100, 100, 10, 10, 0.3, 0.2, 0.59))
    assert postprocess(out, LB_4000, conf=0.6) == []


def test_postprocess_max_det_keeps_the_most_confident():
    anchors = [(50 + 100 * i, 100, 20, 20, 0.61 + 0.05 * i, 0, 0) for i in range(6)]
    dets = postprocess(raw(*anchors), LB_4000, conf=0.6, max_det=3)
    assert [d.conf for d in dets] == [f32(0.86), f32(0.81), f32(0.76)]


def test_postprocess_class_offset_keeps_classes_apart_at_any_overlap():
    out = raw(
        (300, 300, 100, 100, 0.9, 0.0, 0.0),
        (300, 300, 100, 100, 0.0, 0.0, 0.8),  # identical box, vehicle
        (300, 300, 100, 100, 0.7, 0.0, 0.0),  # identical box, animal -> suppressed
    )
    dets = postprocess(out, LB_4000, conf=0.6)
    assert [(d.category, d.conf) for d in dets] == [(ANIMAL, f32(0.9)), (VEHICLE, f32(0.8))]


def test_scale_back_uses_ultralytics_8_3_73_pad():
    # 1000x630: the letterbox pads 1 px above, but scale_boxes of ultralytics 8.3.73 computes
    # round((608 - 630 * 0.96) / 2 - 0.1) = 2 and subtracts that (fixed upstream only in 2026).
    lb = plan_letterbox(630, 1000, 960)
    assert lb.top == 1
    (det,) = postprocess(raw((480, 201, 96, 200, 0.9, 0, 0)), lb, conf=0.6)
    # y1 = 101 in the input -> (101 - 2) / 0.96 = 103.125 (it would be 104.1667 with pad 1).
    assert det.box == pytest.approx((450.0, 103.125, 550.0, 311.45834), rel=1e-6)


def test_nms_is_strict_and_stable():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 5.1], [20, 20, 30, 30]], F)
    scores = np.array([0.9, 0.8, 0.8, 0.8], F)
    # IoU(0, 1) = 50/100 = 0.5 exactly: not > 0.5, kept.  IoU(0, 2) = 0.51 > 0.5: suppressed.
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 3]
    # Equal scores keep input order (torchvision sorts stably): the first of two twins survives.
    twins = np.array([[0, 0, 10, 10], [0, 0, 10, 9.9]], F)
    assert nms(twins, np.array([0.8, 0.8], F), 0.5).tolist() == [0]
    assert nms(twins[::-1], np.array([0.8, 0.8], F), 0.5).tolist() == [0]
    assert nms(np.zeros((0, 4), F), np.zeros(0, F), 0.7).tolist() == []


def det(conf, category=ANIMAL, box=(0.0, 0.0, 10.0, 10.0), source="DF"):
    return Detection(box, f32(conf), category, source)


def test_select_box():
    assert select_box([]) is None
    assert select_box([det(0.9, PERSON), det(0.7), det(0.65)]) == 1  # best animal wins over a better person
    assert select_box([det(0.9, VEHICLE), det(0.7, PERSON)]) == 0  # no animal: the best box
    assert select_box([det(0.8), det(0.8)]) == 0  # ties: the earlier box


def test_combine_single_and_backstop_modes():
    df = [det(0.9, PERSON)]
    mds = [det(0.7, source="MDS")]
    assert combine("DF", df, None) == df
    assert combine("MDS", None, mds) == mds
    assert combine("DFbsMDS", df, None) == df  # DF kept a box (of any class): no backstop
    assert combine("DFbsMDS", [], mds) == mds  # DF kept nothing: MDS decides
    assert combine("DFbsMDS", [], []) == []
    with pytest.raises(ValueError):
        combine("DFbsMDS", [], None)
    with pytest.raises(ValueError):
        combine("MDR", df, mds)


def test_combine_pooled_mode_runs_class_aware_nms():
    df = [det(0.9, box=(100.0, 100.0, 200.0, 200.0))]
    mds = [
        det(0.95, PERSON, box=(100.0, 100.0, 200.0, 200.0), source="MDS"),  # other class: kept
        det(0.8, box=(102.0, 101.0, 201.0, 199.0), source="MDS"),  # same animal (IoU 0.95): dropped
        det(0.55, box=(400.0, 50.0, 450.0, 90.0), source="MDS"),  # elsewhere: kept
    ]
    pooled = combine("DFMDS", df, mds)
    assert [(d.conf, d.category, d.source) for d in pooled] == [
        (f32(0.95), PERSON, "MDS"), (f32(0.9), ANIMAL, "DF"), (f32(0.55), ANIMAL, "MDS")]
    # Ties between the two detectors go to DF (pooled first).
    tie = combine("DFMDS", [det(0.8)], [det(0.8, source="MDS")])
    assert [d.source for d in tie] == ["DF"]
    assert combine("DFMDS", [], []) == []


def test_needs_mds():
    assert needs_mds("DF", None) is False
    assert needs_mds("MDS", None) is True
    assert needs_mds("DFMDS", [det(0.9)]) is True
    assert needs_mds("DFbsMDS", [det(0.9, VEHICLE)]) is False
    assert needs_mds("DFbsMDS", []) is True
