"""PyTorch checkpoints in DeepFaune 1.4's official formats for the speed benchmark, and their ONNX exports.

The references (DeepFaune's own PyTorch code path) and our ONNX engine must run the SAME weights,
so random checkpoints are written once with tests/models/official_checkpoints.py and then installed with
`deepfaune models install --from` (export + parity + int8 classifier).  Random detector heads
find nothing useful, so the DeepFaune detector gets a "marker" head: the animal score of its
stride-8 branch is a linear read-out, fitted here, of the features that branch already computes,
chosen so that the red marker painted on 40 % of the benchmark images scores above 0.6 and the
rest below; the whole YOLOv8s compute is unchanged and the file is a plain ultralytics checkpoint.
The MegaDetector stand-in (a second YOLOv8s) keeps its random head, biased so that it keeps
nothing on these scenes: the backstop's cost is paid on every empty image, as in a real run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tests" / "models") not in sys.path:  # official_checkpoints: the random-weight official files
    sys.path.append(str(ROOT / "tests" / "models"))

from deepfaune_plugin.engine.imageio import read_image  # noqa: E402
from deepfaune_plugin.engine.letterbox import letterbox  # noqa: E402
from deepfaune_plugin.models.cards import load_card  # noqa: E402

MARKER_RGB = (220, 20, 20)


def _marker_mask(image_bgr: np.ndarray, grid_h: int, grid_w: int, lb) -> np.ndarray:
    """Cells of a stride-8 grid whose centre lies on the marker (by colour in the original image)."""
    b, g, r = (image_bgr[..., k].astype(np.int16) for k in range(3))
    red = (r > 180) & (g < 60) & (b < 60)
    ys = ((np.arange(grid_h) + 0.5) * 8 - lb.top) / lb.ratio
    xs = ((np.arange(grid_w) + 0.5) * 8 - lb.left) / lb.ratio
    yi = np.clip(ys.astype(int), 0, image_bgr.shape[0] - 1)
    xi = np.clip(xs.astype(int), 0, image_bgr.shape[1] - 1)
    return red[np.ix_(yi, xi)]


def plant_marker_head(pt: Path, calibration: list[Path], seed: int = 0) -> dict:
    """Rewrite the animal-score conv of the stride-8 branch of an ultralytics checkpoint (in place)."""
    import torch

    ckpt = torch.load(str(pt), map_location="cpu", weights_only=False)
    model = ckpt["model"].float().eval()
    head = model.model[-1]
    feats: list = []
    hook = head.cv3[0][-2].register_forward_hook(lambda m, i, o: feats.append(o.detach()[0].numpy()))
    xs, ys = [], []
    with torch.no_grad():
        for path in calibration:
            image = read_image(path)
            tensor, lb = letterbox(image, 960)
            feats.clear()
            model(torch.from_numpy(tensor))
            f = feats[0]  # C x H x W
            mask = _marker_mask(image, f.shape[1], f.shape[2], lb)
            xs.append(f.reshape(f.shape[0], -1).T)
            ys.append(mask.reshape(-1))
    hook.remove()
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys)
    # A ridge read-out to +-1 targets, then scaled so the margin between classes maps to logits +-3.
    mean = x.mean(0)
    xc = x - mean
    target = np.where(y, 1.0, -1.0)
    w = np.linalg.solve(xc.T @ xc + 1e-1 * len(x) * np.eye(x.shape[1]), xc.T @ target)
    s = xc @ w
    pos, neg = s[y], s[~y]
    lo, hi = np.percentile(neg, 99.99), np.percentile(pos, 50)
    scale = 6.0 / max(hi - lo, 1e-6)
    mid = (lo + hi) / 2
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for k, branch in enumerate(head.cv3):
            conv = branch[-1]
            conv.weight.mul_(0.05)  # keep a little of the random read-out: distinct scores, no ties
            conv.bias.fill_(-12.0)
            if k == 0:
                conv.weight[0, :, 0, 0] += torch.from_numpy((w * scale).astype(np.float32))
                conv.bias[0] = float(-(mean @ w + mid) * scale)
    ckpt["model"] = model.half()
    torch.save(ckpt, str(pt))
    z = (s - mid) * scale
    return {"cells_marker": int(y.sum()), "cells_other": int((~y).sum()),
            "max_other_logit": float(z[~y].max()), "median_marker_logit": float(np.median(z[y])),
            "rng": int(rng.integers(1 << 30))}


def silence_head(pt: Path, bias: float = -9.0) -> None:
    """Bias every class score of a random ultralytics checkpoint far below any threshold."""
    import torch

    ckpt = torch.load(str(pt), map_location="cpu", weights_only=False)
    model = ckpt["model"].float()
    with torch.no_grad():
        for branch in model.model[-1].cv3:
            branch[-1].bias.fill_(bias)
    ckpt["model"] = model.half()
    torch.save(ckpt, str(pt))


def write_checkpoints(folder: Path, images: list[Path], log=print) -> Path:
    """DeepFaune 1.4's four official files (random weights) in `folder`, under their official names."""
    from official_checkpoints import write_bird_head, write_classifier_checkpoint, write_detector_checkpoint

    card = load_card("1.4")
    folder.mkdir(parents=True, exist_ok=True)
    c = card.classifier
    if not (folder / c.file).exists():
        log("writing the ViT-L/14 classifier checkpoint")
        write_classifier_checkpoint(folder / c.file, c.backbone, c.num_classes, c.crop_size, seed=0)
    if not (folder / card.bird_head.file).exists():
        write_bird_head(folder / card.bird_head.file)
    df, mds = folder / card.detectors["DF"].file, folder / card.detectors["MDS"].file
    if not df.exists():
        log("writing the DF YOLOv8s checkpoint with a marker head")
        tmp = df.with_suffix(".tmp.pt")
        write_detector_checkpoint(tmp, "yolov8s.yaml", seed=1)
        marked = [p for i, p in enumerate(images) if i % 5 in (1, 3)][:4]
        plain = [p for i, p in enumerate(images) if i % 5 not in (1, 3)][:4]
        log(f"  marker head: {plant_marker_head(tmp, marked + plain)}")
        tmp.rename(df)
    if not mds.exists():
        log("writing the MDS YOLOv8s checkpoint (random, silent head)")
        tmp = mds.with_suffix(".tmp.pt")
        write_detector_checkpoint(tmp, "yolov8s.yaml", seed=2)
        silence_head(tmp)
        tmp.rename(mds)
    return folder


def install_exports(pt_dir: Path, models_dir: Path, log=print) -> Path:
    """`deepfaune models install 1.4 --from pt_dir`: ONNX files with parity checks, int8 classifier, manifest."""
    from models.export.install import install

    if not (models_dir / "deepfaune-models.json").exists():
        install("1.4", models_dir, source_dir=pt_dir, progress=False, log=log)
    return models_dir


def quantize_models(models_dir: Path, images: list[Path], log=print) -> None:
    """`deepfaune models quantize`, calibrated on 8 other images of the same kind (not the measured ones)."""
    from bench_run import make_images
    from models.export.quantize import quantize_installed

    calibration = models_dir.parent / "calibration"
    make_images(calibration, 8, seed=1)
    del images
    quantize_installed(models_dir, "1.4", calibration_dir=calibration, log=log)
