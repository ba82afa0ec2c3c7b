"""Parity of the torch-free converter (models/convert) against PyTorch, on full-size random checkpoints in the
official formats, beside the torch/ultralytics export's own parity: the table in docs/models.md.

    pip install timm ultralytics torch           # the export extra: only to make and check the references
    python benchmarks/convert_parity.py [--work DIR] [--only dinov2,yolov8s,yolo11s]

Each row: the checkpoint written with random weights (tests/models/official_checkpoints.py), converted both
ways, both graphs compared with DeepFaune's own forward pass (timm with dynamic_img_size for the classifier,
ultralytics' predictor for the detectors) on the same probe inputs: max |delta logit| over 8 probe crops, and for
detectors the boxes after NMS at conf 0.25 on 4 probe scenes (min IoU, boxes without a counterpart).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "models")]

DINOV2 = "vit_large_patch14_dinov2.lvd142m"


def classifier_row(work: Path, backbone: str = DINOV2, classes: int = 38, size: int = 182,
                   pool: str | None = None, label: str = "DINOv2 ViT-L/14 at 182 + bird head (1.3, 1.4)") -> dict:
    import official_checkpoints

    from deepfaune_plugin.engine.onnx_models import OnnxClassifier
    from deepfaune_plugin.models.convert.vit import convert_classifier
    from deepfaune_plugin.models.export.checkpoint import load_bird_head, load_classifier_checkpoint
    from deepfaune_plugin.models.export.classifier import build_reference, export_classifier
    from deepfaune_plugin.models.export.parity import max_abs
    from deepfaune_plugin.models.export.probes import probe_crops

    ckpt = official_checkpoints.write_classifier_checkpoint(work / "cls.pt", backbone, classes, size, seed=11,
                                                            global_pool=pool)
    bird = official_checkpoints.write_bird_head(work / "bird.pt", seed=12)
    t0 = time.monotonic()
    free = convert_classifier(ckpt, bird, work / "free.onnx", size)
    t_free = time.monotonic() - t0
    t0 = time.monotonic()
    torch_made = export_classifier(ckpt, work / "torch.onnx", bird_head=bird, crop_size=size, global_pool=pool).path
    t_torch = time.monotonic() - t0
    reference, _ = build_reference(load_classifier_checkpoint(ckpt), load_bird_head(bird), pool)
    x = probe_crops(size)
    ref_logits, ref_bird, _ = reference.run(x)
    row = {"architecture": label, "probes": f"{len(x)} crops"}
    for name, path, seconds in (("torch-free", free, t_free), ("torch export", torch_made, t_torch)):
        logits, bird_logits = OnnxClassifier(path, size=size)(x)
        row[name] = (f"max abs dlogit {max_abs(ref_logits, logits):.1e}, bird {max_abs(ref_bird, bird_logits):.1e}"
                     f" ({seconds:.0f} s)")
    return row


def detector_row(work: Path, cfg: str, label: str) -> dict:
    import official_checkpoints

    from deepfaune_plugin.models.convert.yolo import convert_detector
    from deepfaune_plugin.models.export.detector import _ultralytics_export, _fix_output_shape, load_reference
    from deepfaune_plugin.models.export.detector import measure_parity
    from deepfaune_plugin.models.export.probes import probe_images

    stem = cfg.removesuffix(".yaml")
    pt = official_checkpoints.write_detector_checkpoint(work / f"{stem}.pt", cfg, seed=5)
    t0 = time.monotonic()
    free = convert_detector(pt, work / f"{stem}-free.onnx")
    t_free = time.monotonic() - t0
    t0 = time.monotonic()
    (work / stem).mkdir(exist_ok=True)
    torch_made = _ultralytics_export(pt, 960, 17, work / stem)  # the export itself, without its refusal on a miss
    _fix_output_shape(torch_made)
    t_torch = time.monotonic() - t0
    reference, images = load_reference(pt), probe_images()
    row = {"architecture": label, "probes": f"{len(images)} scenes, conf 0.25"}
    for name, path, seconds in (("torch-free", free, t_free), ("torch export", torch_made, t_torch)):
        p = measure_parity(reference, path, images, 960, 0.25)
        row[name] = (f"{p.boxes} boxes, min IoU {p.min_iou:.5f}, {len(p.mismatches)} unmatched, "
                     f"max abs dscore {p.max_abs_raw_score:.1e} ({seconds:.0f} s)")
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="where the ~2 GB of checkpoints go (default: temp)")
    parser.add_argument("--only", default="dinov2,dinov3,yolov8s,yolo11s")
    args = parser.parse_args(argv)
    wanted = args.only.split(",")
    with tempfile.TemporaryDirectory(prefix="convert-parity-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        if "dinov2" in wanted:
            rows.append(classifier_row(work))
        if "dinov3" in wanted:
            rows.append(classifier_row(work, "vit_large_patch16_dinov3.lvd1689m", 40, 224, "token",
                                       "DINOv3 ViT-L/16 at 224 + bird head (1.5)"))
        if "yolov8s" in wanted:
            rows.append(detector_row(work, "yolov8s.yaml", "YOLOv8s, DeepFaune's detector (DF)"))
        if "yolo11s" in wanted:
            rows.append(detector_row(work, "yolo11s.yaml", "YOLO11s, MegaDetector v1000 sorrel (MDS)"))
    print("| architecture | probes | torch-free converter | torch/ultralytics export |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['architecture']} | {r['probes']} | {r['torch-free']} | {r['torch export']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
