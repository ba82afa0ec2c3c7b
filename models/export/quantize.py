"""An int8 variant of the classifier: dynamic quantisation of its matrix products, per output channel.

Never the default model: it is a separate file with its own manifest entry, and its drift from
the fp32 export is measured on the same probe crops and stored, so a user can judge the trade.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deepfaune_plugin.atomic import atomic_output
from deepfaune_plugin.engine.onnx_models import OnnxClassifier


SETTINGS = {"method": "onnxruntime quantize_dynamic", "weight_type": "QInt8", "per_channel": True,
            "reduce_range": False, "op_types": ["MatMul", "Gemm"]}


@dataclass
class Int8Drift:
    probes: int
    max_abs_logit: float
    mean_abs_logit: float
    max_abs_prob: float  # softmax at T = 1
    top1_agree: float
    max_abs_bird_logit: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def drift(fp32: tuple[np.ndarray, np.ndarray | None], int8: tuple[np.ndarray, np.ndarray | None]) -> Int8Drift:
    (a, abird), (b, bbird) = fp32, int8
    d = np.abs(a.astype(np.float64) - b)
    return Int8Drift(
        probes=len(a), max_abs_logit=float(d.max()), mean_abs_logit=float(d.mean()),
        max_abs_prob=float(np.abs(_softmax(a.astype(np.float64)) - _softmax(b.astype(np.float64))).max()),
        top1_agree=float(np.mean(a.argmax(1) == b.argmax(1))),
        max_abs_bird_logit=None if abird is None else float(np.abs(abird.astype(np.float64) - bbird).max()),
    )


def quantize_classifier(fp32: Path | str, out: Path | str, probes: np.ndarray, size: int) -> Int8Drift:
    """Write the int8 model to `out` (atomically) and return its drift from `fp32` on `probes`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reference = OnnxClassifier(fp32, size=size)(probes)
    with atomic_output(Path(out)) as tmp, _quiet_root_logger():
        quantize_dynamic(str(fp32), str(tmp), op_types_to_quantize=SETTINGS["op_types"],
                         per_channel=SETTINGS["per_channel"], reduce_range=SETTINGS["reduce_range"],
                         weight_type=QuantType.QInt8)
        measured = drift(reference, OnnxClassifier(tmp, size=size)(probes))
    return measured


def int8_classifier(fp32: Path, out: Path, probes: np.ndarray, size: int, log) -> dict:
    """Quantise a classifier next to its fp32 file, say its drift, and return what the models manifest records
    of it (an int8 file is never the default)."""
    log(f"quantising the classifier to int8 ({Path(out).name}; never the default)")
    d = quantize_classifier(fp32, out, probes, size)
    log(f"  drift from fp32: max |delta logit| {d.max_abs_logit:.3f}, top-1 agreement {d.top1_agree:.0%}")
    return {"source": "export-int8", "derived_from": Path(fp32).name, "quantization": SETTINGS,
            "drift": d.as_dict(), "crop_size": size, "default": False}


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer advises pre-processing through the root logger; not useful here."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


# ---------------------------------------------------------------- the detector: static QDQ int8

#: reduce_range: 7-bit weights, because AVX2 without VNNI multiplies u8 x s8 pairs into saturating int16.
DETECTOR_SETTINGS = {"method": "onnxruntime quantize_static", "format": "QDQ", "activation_type": "QUInt8",
                     "weight_type": "QInt8", "per_channel": True, "reduce_range": True, "calibration": "MinMax",
                     "op_types": ["Conv"], "excluded": "the head's last convolutions (box and class read-outs) "
                                                      "and the DFL projection stay float32"}


@dataclass
class DetectorInt8Drift:
    images: int
    same_box_count: int  # images where both keep the same number of boxes at the card's confidence
    max_abs_score: float  # over the fp32 model's kept boxes, its score minus the int8 score at the same anchor
    calibration_images: int

    def as_dict(self) -> dict:
        return asdict(self)


def _float_head_nodes(model) -> list[str]:
    """Conv nodes that must stay float: outputs read straight into the head's Concat, and the DFL conv."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        if "dfl" in node.name.lower() or any(c.op_type == "Concat" for c in consumers.get(node.output[0], [])):
            keep.append(node.name)
    return keep


def quantize_detector(fp32: Path | str, out: Path | str, calibration: list[np.ndarray], size: int = 960,
                      conf: float = 0.6, probes: list[np.ndarray] | None = None) -> DetectorInt8Drift:
    """Static QDQ int8 detector at `out` (atomically), calibrated on BGR images; drift on `probes` (default: the same)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from deepfaune_plugin.engine.letterbox import letterbox

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self):
            image = next(self.items, None)
            return None if image is None else {"images": letterbox(image, size)[0]}

    excluded = _float_head_nodes(onnx.load(str(fp32), load_external_data=False))
    with atomic_output(Path(out)) as tmp, _quiet_root_logger():
        quantize_static(str(fp32), str(tmp), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded, reduce_range=DETECTOR_SETTINGS["reduce_range"])
        probes = probes if probes is not None else calibration
        same, worst = detector_drift(fp32, tmp, probes, size, conf)
    return DetectorInt8Drift(images=len(probes), same_box_count=same, max_abs_score=worst,
                             calibration_images=len(calibration))


def detector_drift(fp32: Path | str, other: Path | str, probes: list[np.ndarray], size: int,
                   conf: float) -> tuple[int, float]:
    """(images where both keep the same number of boxes, max |delta score| over the fp32 model's kept anchors)."""
    from deepfaune_plugin.engine.detection import postprocess
    from deepfaune_plugin.engine.letterbox import letterbox
    from deepfaune_plugin.engine.onnx_models import OnnxDetector

    a, b = OnnxDetector(fp32, size=size, conf=conf), OnnxDetector(other, size=size, conf=conf)
    same, worst = 0, 0.0
    for image in probes:
        tensor, lb = letterbox(image, size)
        (oa,), (ob,) = (d.session.run(["output0"], {"images": tensor}) for d in (a, b))
        same += int(len(postprocess(oa, lb, conf)) == len(postprocess(ob, lb, conf)))
        ra, rb = oa[0, 4:], ob[0, 4:]
        kept = ra.max(0) > conf
        if kept.any():
            worst = max(worst, float(np.abs(ra[:, kept] - rb[:, kept]).max()))
    return same, worst


# ---------------------------------------------------------------- `deepfaune models quantize`

def quantize_installed(models_dir: Path | str, version: str, calibration_dir: Path | None = None,
                       calibration_count: int = 8, log=print) -> dict[str, str]:
    """Write and register the int8 classifier and int8 detectors of an installed version (`--fast` on the
    CPU), and their fp16 variants (`--fast` on a GPU, see half.py).

    The detectors are calibrated on `calibration_dir`'s photos (recommended: a few of your own
    camera's images, empty and not) or on scenes made in code; files already made are kept.
    """
    from deepfaune_plugin.models.cards import load_card
    from deepfaune_plugin.models.installed import InstalledModels

    from .install import int8_name
    from .probes import probe_crops, probe_images

    installed = InstalledModels(models_dir)
    card = load_card(version)
    entry = installed.manifest["versions"].get(card.version)
    if entry is None:
        raise ValueError(f"model version {card.version} is not installed in {installed.root}")
    images = probe_images(directory=calibration_dir, limit=calibration_count)
    made: dict[str, str] = {}
    classifier = entry["classifier"]
    standin = bool(installed.file_info(classifier).get("standin"))
    if not entry.get("classifier_int8"):
        name = int8_name(classifier)
        size = card.classifier.crop_size
        meta = int8_classifier(installed.file_for(card.version, "classifier"), installed.root / name,
                               probe_crops(size, images=images), size, log)
        installed.add_file(installed.root / name, "classifier", standin=standin, **meta)
        made["classifier"] = name
    detectors = {}
    for mode, fp32 in entry.get("detectors", {}).items():
        name = entry.get("detectors_int8", {}).get(mode) or int8_name(fp32)
        if not (installed.root / name).exists() or name not in installed.manifest["files"]:
            spec = card.detectors[mode]
            log(f"quantising the {mode} detector to static QDQ int8 ({name}), calibrated on {len(images)} images")
            d = quantize_detector(installed.file_for(card.version, "detector", mode=mode), installed.root / name, images,
                                  size=spec.size, conf=spec.conf)
            log(f"  drift from fp32: same box count on {d.same_box_count}/{d.images} images, "
                f"max |delta score| {d.max_abs_score:.3f}")
            installed.add_file(installed.root / name, "detector", standin=bool(installed.file_info(fp32).get("standin")),
                           source="export-int8", derived_from=fp32, detector=mode, conf=spec.conf,
                           quantization=DETECTOR_SETTINGS, drift=d.as_dict(), default=False)
            made[f"detector-{mode}"] = name
        detectors[mode] = name
    installed.set_int8(card.version, classifier_int8=entry.get("classifier_int8") or made.get("classifier"),
                   detectors_int8=detectors)
    from .half import fp16_installed

    made.update(fp16_installed(installed, card, images, log))
    installed.save()
    return made
