"""fp16 variants of the fp32 models: what `--fast` runs on a GPU (issue 20).

Int8 is the CPU's fast path (VNNI/AVX2 integer products); GPUs gain from half precision instead, and run
quantised operators slower than fp32 or not at all. The weights and activations become float16, the inputs
and outputs stay float32 (the ONNX contract is unchanged), and the drift from fp32 is measured on the same probes
as int8's and stored in the manifest. The converter is the one onnxruntime itself ships
(`onnxruntime.transformers.float16`): no new dependency.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepfaune_plugin.atomic import atomic_output

#: What the manifest records of the conversion, so a file can be remade the same way.
FP16_SETTINGS = {"method": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True}


def fp16_name(onnx_name: str) -> str:
    stem = onnx_name[:-5] if onnx_name.endswith(".onnx") else onnx_name
    return f"{stem}-fp16.onnx"


def convert_fp16(fp32: Path | str, out: Path | str) -> Path:
    """Write the fp16 model of `fp32` to `out`, atomically."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=FP16_SETTINGS["keep_io_types"])
    with atomic_output(Path(out)) as tmp:
        onnx.save(model, str(tmp))
    return Path(out)


def fp16_installed(store, card, images: list[np.ndarray], log=print) -> dict[str, str]:
    """fp16 classifier and detectors of an installed version, registered as its "fp16" variant (files made
    before are kept). Returns what was made, by role."""
    from deepfaune_plugin.engine.onnx_models import OnnxClassifier

    from .probes import probe_crops
    from .quantize import detector_drift, drift

    entry = store.manifest["versions"][card.version]
    made: dict[str, str] = {}

    def fresh(name: str) -> bool:
        return not (store.root / name).exists() or name not in store.manifest["files"]

    classifier = entry["classifier"]
    name = entry.get("classifier_fp16") or fp16_name(classifier)
    if fresh(name):
        size = card.classifier.crop_size
        log(f"converting the classifier to fp16 ({name}; for --fast on a GPU)")
        fp32 = store.file_for(card.version, "classifier")
        convert_fp16(fp32, store.root / name)
        crops = probe_crops(size, images=images)
        d = drift(OnnxClassifier(fp32, size=size)(crops), OnnxClassifier(store.root / name, size=size)(crops))
        log(f"  drift from fp32: max |delta logit| {d.max_abs_logit:.4f}, top-1 agreement {d.top1_agree:.0%}")
        store.add_file(store.root / name, "classifier", standin=bool(store.file_info(classifier).get("standin")),
                       **_meta(classifier, d.as_dict(), crop_size=size))
        made["classifier_fp16"] = name
    classifier_fp16 = name
    detectors: dict[str, str] = {}
    for mode, fp32_name in entry.get("detectors", {}).items():
        name = entry.get("detectors_fp16", {}).get(mode) or fp16_name(fp32_name)
        if fresh(name):
            spec = card.detectors[mode]
            log(f"converting the {mode} detector to fp16 ({name})")
            fp32 = store.file_for(card.version, "detector", mode=mode)
            convert_fp16(fp32, store.root / name)
            same, worst = detector_drift(fp32, store.root / name, images, spec.size, spec.conf)
            log(f"  drift from fp32: same box count on {same}/{len(images)} images, max |delta score| {worst:.4f}")
            store.add_file(store.root / name, "detector", standin=bool(store.file_info(fp32_name).get("standin")),
                           detector=mode, conf=spec.conf,
                           **_meta(fp32_name, {"images": len(images), "same_box_count": same,
                                               "max_abs_score": worst}))
            made[f"detector_fp16-{mode}"] = name
        detectors[mode] = name
    store.set_variant(card.version, "fp16", classifier_fp16, detectors)
    return made


def _meta(derived_from: str, measured: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"source": "export-fp16", "derived_from": derived_from, "conversion": FP16_SETTINGS, "drift": measured,
            "default": False, **extra}
