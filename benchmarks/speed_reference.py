"""DeepFaune 1.4.1's own image code path in PyTorch, re-written for timing (run in its own process).

    python benchmarks/speed_reference.py IMAGES PT_DIR OUT.json [--restore-threads N]

What it does is what DeepFaune 1.4.1 does for a folder of images with detector mode DFbsMDS
(detectTools.py YOLOEnsemble + Detector.bestBoxDetection, classifTools.py Classifier/BirdModel,
predictTools.py PredictorImageBase.nextBatch): per batch of 8 files, ultralytics' predictor on the
file path (DF at 960 px, conf 0.6; when it keeps nothing, MegaDetector at 960 px, conf 0.5), the
best box (first animal, else first box), the square crop as a PIL image, torchvision's
Resize(182, bicubic) + ToTensor + Normalize, then one classifier call on the batch's animal crops
(forward_features, forward_head without softmax, class token through the bird head).
`--restore-threads N` (R2) puts torch back to N threads after ultralytics' predictor has set it to
cpu_count - 1.  Written from the facts of those files, not copied.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

T0 = time.monotonic()

import torch  # noqa: E402  (DeepFaune imports torch, then ultralytics)
import timm  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms import InterpolationMode, transforms  # noqa: E402
from ultralytics import YOLO  # noqa: E402

BATCH = 8
CROP = 182
NUM_CLASSES = 38


class Model(torch.nn.Module):
    def __init__(self, backbone: str):
        super().__init__()
        self.base_model = timm.create_model(backbone, pretrained=False, num_classes=NUM_CLASSES, dynamic_img_size=True)


class BirdModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bird_model = torch.nn.Sequential(torch.nn.Linear(1024, 2048), torch.nn.BatchNorm1d(2048), torch.nn.GELU(),
                                              torch.nn.Dropout(p=0.0), torch.nn.Linear(2048, 8))


def square_crop(image_bgr: np.ndarray, box) -> Image.Image:
    """DeepFaune's cropSquareCVtoPIL on ultralytics' float32 box."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if w > h:
        y1, y2 = y1 - int((w - h) / 2), y2 + int((w - h) / 2)
    if h > w:
        x1, x2 = x1 - int((h - w) / 2), x2 + int((h - w) / 2)
    height, width = image_bgr.shape[:2]
    part = image_bgr[max(0, int(y1)):min(int(y2), height), max(0, int(x1)):min(int(x2), width)]
    return Image.fromarray(part[:, :, (2, 1, 0)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", type=Path)
    ap.add_argument("pt_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--restore-threads", type=int, default=None)
    args = ap.parse_args()
    files = sorted(str(p) for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    pt = args.pt_dir
    clf_file = pt / "deepfaune-vit_large_patch14_dinov2.lvd142m.v4.pt"
    bird_file = pt / "deepfaune-vit_large_patch14_dinov2.lvd142m.v4-bird_head.pt"

    t_load = time.monotonic()
    df, mds = YOLO(str(pt / "deepfaune-yolov8s_960.pt")), YOLO(str(pt / "md_v1000.0.0-sorrel.pt"))
    model = Model("vit_large_patch14_dinov2.lvd142m")
    params = torch.load(str(clf_file), map_location=None, weights_only=False)
    model.load_state_dict(params["state_dict"])
    bird = BirdModel()
    bird.load_state_dict(torch.load(str(bird_file), map_location=None))
    model.eval(), bird.eval()
    tfm = transforms.Compose([
        transforms.Resize(size=(CROP, CROP), interpolation=InterpolationMode.BICUBIC, max_size=None, antialias=None),
        transforms.ToTensor(),
        transforms.Normalize(mean=torch.tensor([0.4850, 0.4560, 0.4060]), std=torch.tensor([0.2290, 0.2240, 0.2250]))])
    load_s = time.monotonic() - t_load

    def detect(path: str):
        nonlocal det_s, mds_runs
        t = time.monotonic()
        res = df(path, verbose=False, imgsz=960, conf=0.6)
        if args.restore_threads:
            torch.set_num_threads(args.restore_threads)
        boxes = res[0].cpu().numpy().boxes
        if len(boxes.cls) == 0:  # the MegaDetector backstop
            mds_runs += 1
            res = mds(path, verbose=False, imgsz=960, conf=0.5)
            if args.restore_threads:
                torch.set_num_threads(args.restore_threads)
            boxes = res[0].cpu().numpy().boxes
        det_s += time.monotonic() - t
        return res[0].cpu().orig_img, boxes

    det_s = clf_s = 0.0
    mds_runs = 0
    first_result = None
    out: dict[str, dict] = {}
    buffer = torch.ones((BATCH, 3, CROP, CROP))
    t_run = time.monotonic()
    for k1 in range(0, len(files), BATCH):
        animals = []
        for k in range(k1, min(k1 + BATCH, len(files))):
            image, boxes = detect(files[k])
            name = os.path.basename(files[k])
            if not len(boxes.cls):
                out[name] = {"category": 0, "count": 0}
                continue
            hits = np.where(boxes.cls == 0)[0]
            kbox = int(hits[0]) if len(hits) else 0
            category = int(boxes.cls[kbox]) + 1
            box = boxes.xyxy[kbox]
            out[name] = {"category": category, "box": [float(v) for v in box], "conf": float(boxes.conf[kbox]),
                         "count": int((boxes.cls == 0).sum()) if category == 1 else 0}
            if category == 1:
                buffer[k - k1] = tfm(square_crop(image, box.copy())).unsqueeze(0)
                animals.append(k)
        if animals:
            t = time.monotonic()
            with torch.no_grad():
                emb = model.base_model.forward_features(buffer[[k - k1 for k in animals]])
                logits = model.base_model.forward_head(emb)
                bird_logits = bird.bird_model(emb[:, 0, :])
            clf_s += time.monotonic() - t
            for j, k in enumerate(animals):
                entry = out[os.path.basename(files[k])]
                entry["logits"] = logits[j].numpy().astype(float).tolist()
                entry["bird_logits"] = bird_logits[j].numpy().astype(float).tolist()
        if first_result is None:
            first_result = time.monotonic() - T0
    run_s = time.monotonic() - t_run
    result = {
        "images": len(files), "wall_run_s": run_s, "process_s": time.monotonic() - T0, "load_s": load_s,
        "first_result_s": first_result, "detector_s": det_s, "classifier_s": clf_s, "mds_runs": mds_runs,
        "animal_crops": sum(1 for v in out.values() if "logits" in v),
        "torch_threads_end": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": {"torch": torch.__version__, "timm": timm.__version__,
                     "ultralytics": __import__("ultralytics").__version__},
        "files": out,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "files"}), file=sys.stderr)


if __name__ == "__main__":
    main()
