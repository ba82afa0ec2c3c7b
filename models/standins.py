"""Stand-in models: ONNX files that obey the exact contract of models/README.md, without DeepFaune's weights.

They let everything downstream (engine, decisions, hosts, benchmarks) run and be tested without
downloading 1.3 GB or installing torch.  The small ones are cheap and predictable: the detector
finds saturated colour markers (red = animal, green = person, blue = vehicle) so tests can plant
detections; the classifier gives seed-dependent logits.  The full-size ones rebuild the real
network shapes (ViT-L, YOLOv8s) with random weights so that timings are the real ones.
All graphs are built with onnx.helper (opset 17) and are byte-identical for a given seed.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .cards import ModelCard, load_card
from .convert.vit import rope_tables, rotate
from .graph import Graph, detector_io, features_output, save
from .installed import InstalledModels

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
CELL = 32  # the marker detector's grid step, in input pixels (YOLO's coarsest stride)
SUBCELL = 8  # colour is tested on 8x8 pixel sub-cells

# Marker detector constants (documented in models/README.md).
MARKER_THRESHOLD = 0.6  # colour excess (e.g. R - G - B on 0..1 values) above which a cell is a marker
MARKER_SHARPNESS = 20.0
STRENGTH_CELLS = 2.5  # marker cells in the 3x3 window around a peak giving a score of 0.5
STRENGTH_SLOPE = 3.0


# ---------------------------------------------------------------------------------------------
# Small classifier
# ---------------------------------------------------------------------------------------------
_FEATURES = 16
_PATCH = 8


def _calibration_images(rng: np.random.Generator, size: int, count: int = 48) -> np.ndarray:
    """Ordinary-looking inputs: smooth random colour fields + texture, ImageNet-normalised, NCHW."""
    out = np.empty((count, 3, size, size))
    for i in range(count):
        grid = rng.uniform(0.05, 0.95, size=(3, 4, 4))
        reps = -(-size // 4)
        field = np.kron(grid, np.ones((reps, reps)))[:, :size, :size]
        field = field + rng.normal(0.0, rng.uniform(0.01, 0.15), size=field.shape)
        out[i] = (np.clip(field, 0, 1) - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    return out


def _patch_features(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy twin of Conv(k=s=8) -> Relu -> GlobalAveragePool, for calibration."""
    n, _, s, _ = x.shape
    g = (s - _PATCH) // _PATCH + 1
    patches = x[:, :, : g * _PATCH, : g * _PATCH].reshape(n, 3, g, _PATCH, g, _PATCH)
    conv = np.einsum("ncyixj,fcij->nfyx", patches, w) + b[None, :, None, None]
    return np.maximum(conv, 0.0).mean(axis=(2, 3))


def _head(rng: np.random.Generator, feats: np.ndarray, n_out: int, target_top: float):
    """A linear head on standardised features, scaled so the median top softmax is ~target_top."""
    mu, sd = feats.mean(axis=0), feats.std(axis=0) + 1e-6
    w = rng.standard_normal((n_out, feats.shape[1]))
    z = (feats - mu) / sd
    lo, hi = 0.01, 10.0
    for _ in range(50):  # bisection on the logit scale
        alpha = math.sqrt(lo * hi)
        logits = alpha * z @ w.T
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        top = np.median(p.max(axis=1) / p.sum(axis=1))
        lo, hi = (alpha, hi) if top < target_top else (lo, alpha)
    alpha = float(f"{alpha:.3g}")  # rounded: the same bytes on any BLAS
    weight = alpha * w / sd[None, :]  # [n_out, F]
    bias = -weight @ mu
    return weight, bias


def build_small_classifier(card: ModelCard, seed: int = 0, features: bool = True) -> onnx.ModelProto:
    """Conv 3->16 (k=s=8) -> Relu -> GAP -> Gemm logits (+ Gemm bird_logits), the 16 pooled values as
    `features` (what the heads read, as the class token is for the real ViT); deterministic from seed.
    `features=False`: the graph of before issue 34 (tests compare the logits)."""
    rng = np.random.default_rng(seed)
    size, n = card.classifier.crop_size, card.classifier.num_classes
    w1 = rng.standard_normal((_FEATURES, 3, _PATCH, _PATCH)) / math.sqrt(3 * _PATCH * _PATCH)
    b1 = rng.normal(0.0, 0.1, _FEATURES)
    feats = _patch_features(_calibration_images(rng, size), w1, b1)
    wl, bl = _head(rng, feats, n, target_top=0.75)

    g = Graph()
    x = g.op("Conv", "input", g.const(w1, stem="w"), g.const(b1, stem="b"),
             kernel_shape=[_PATCH, _PATCH], strides=[_PATCH, _PATCH])
    f = g.op("Flatten", g.op("GlobalAveragePool", g.op("Relu", x)), axis=1)
    g.op("Gemm", f, g.const(wl, stem="w"), g.const(bl, stem="b"), transB=1, outputs=["logits"])
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n])]
    if card.bird_head is not None:
        wb, bb = _head(rng, feats, card.bird_head.classes, target_top=0.75)
        g.op("Gemm", f, g.const(wb, stem="w"), g.const(bb, stem="b"), transB=1, outputs=["bird_logits"])
        nb = card.bird_head.classes
        outputs.append(helper.make_tensor_value_info("bird_logits", TensorProto.FLOAT, ["batch", nb]))
    if features:
        outputs.append(features_output(g, f, _FEATURES))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])]
    return g.model(inputs, outputs, "DeepFaune stand-in classifier (small, random weights)",
                   _metadata(card, "classifier", seed, full_size=False))


# ---------------------------------------------------------------------------------------------
# Colour-marker detector head (small detector, and the scores/boxes of the full-size one)
# ---------------------------------------------------------------------------------------------
def _mixing_matrix(rng: np.random.Generator) -> np.ndarray:
    """Colour excess per class: animal = R-G-B, person = G-R-B, vehicle = B-R-G, slightly perturbed by the seed."""
    base = np.array([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    return base + rng.normal(0.0, 0.02, size=(3, 3))


def _marker_head(g: Graph, images: str, rng: np.random.Generator) -> str:
    """[B,3,H,W] RGB/255 -> [B,7,h*w]: cx, cy, w, h, then animal/person/vehicle scores per 32 px cell."""
    # marker test on 8 px sub-cells, then the covered fraction of each 32 px cell: a blob counts by its
    # area whatever its alignment with the grid
    sub = g.avgpool(images, SUBCELL, stride=SUBCELL)
    mix = _mixing_matrix(rng) * MARKER_SHARPNESS
    sub_mask = g.op("Sigmoid", g.op("Conv", sub, g.const(mix[:, :, None, None], stem="w"),
                                    g.const(np.full(3, -MARKER_SHARPNESS * MARKER_THRESHOLD), stem="b")))
    mask = g.avgpool(sub_mask, CELL // SUBCELL, stride=CELL // SUBCELL)  # [B,3,h,w] in 0..1
    # cell indices (1-based) from cumulative sums of ones, so H and W stay dynamic
    ones = g.op("ReduceMax", g.op("Add", g.op("Mul", mask, g.const(0.0)), g.const(1.0)), axes=[1], keepdims=1)
    col = g.op("CumSum", ones, g.const(3, dtype=np.int64))
    row = g.op("CumSum", ones, g.const(2, dtype=np.int64))
    # peak map: nested windows (3, 5, 9, 17, 33 cells) centre the peak on a blob of any size
    avg3, avg9 = g.avgpool(mask, 3, pad=1), g.avgpool(mask, 9, pad=4)
    peak_map = avg3
    for pooled, weight in ((g.avgpool(mask, 5, pad=2), 0.1), (avg9, 0.01), (g.avgpool(mask, 17, pad=8), 1e-3),
                           (g.avgpool(mask, 33, pad=16), 1e-4)):
        peak_map = g.op("Add", peak_map, g.op("Mul", pooled, g.const(weight)))
    cand = g.op("Cast", g.op("Equal", peak_map, _maxpool7(g, peak_map)), to=TensorProto.FLOAT)
    # exact ties (a plateau) are broken by position: the candidate with the highest index in its window
    index = g.op("Mul", cand, g.op("Add", g.op("Mul", row, g.const(4096.0)), col))
    unique = g.op("Cast", g.op("Equal", index, _maxpool7(g, index)), to=TensorProto.FLOAT)
    keep = g.op("Mul", cand, unique)
    # score: marker area (in cells) within the 3x3 window around the peak (>= 4 cells -> > 0.9)
    count3 = g.op("Mul", avg3, g.const(9.0 * STRENGTH_SLOPE))
    strength = g.op("Sigmoid", g.op("Add", count3, g.const(-STRENGTH_SLOPE * STRENGTH_CELLS)))
    scores = g.op("Mul", keep, strength)
    # square box of side 32 * sqrt(marker area in cells within a 9x9 window): sqrt of the blob's area
    side = g.op("Mul", g.op("Sqrt", avg9), g.const(CELL * 9.0))
    side = g.op("Max", g.op("ReduceMax", g.op("Mul", keep, side), axes=[1], keepdims=1), g.const(float(CELL)))
    cx = g.op("Mul", g.op("Add", col, g.const(-0.5)), g.const(float(CELL)))
    cy = g.op("Mul", g.op("Add", row, g.const(-0.5)), g.const(float(CELL)))
    grid = g.op("Concat", cx, cy, side, side, scores, axis=1)
    return g.op("Reshape", grid, g.const([0, 7, -1], dtype=np.int64))


def _maxpool7(g: Graph, x: str) -> str:
    return g.op("MaxPool", x, kernel_shape=[7, 7], strides=[1, 1], pads=[3, 3, 3, 3])


def build_small_detector(card: ModelCard, name: str, seed: int = 0) -> onnx.ModelProto:
    """The colour-marker detector alone: A = (H/32)*(W/32) anchors."""
    rng = np.random.default_rng([seed, _detector_salt(name)])
    g = Graph()
    head = _marker_head(g, "images", rng)
    g.op("Identity", head, outputs=["output0"])
    inputs, outputs = detector_io()
    return g.model(inputs, outputs, f"DeepFaune stand-in detector {name} (colour markers)",
                   _metadata(card, "detector", seed, full_size=False, detector=name))


def _detector_salt(name: str) -> int:
    return sum(ord(c) * 31 ** i for i, c in enumerate(name)) % 65521


def _metadata(card: ModelCard, kind: str, seed: int, full_size: bool, detector: str | None = None) -> dict[str, str]:
    """ONNX metadata; a detector stand-in depends only on (name, seed, size): versions share its file."""
    meta = {"deepfaune_standin": "true", "kind": kind, "seed": str(seed), "full_size": str(full_size).lower()}
    if detector:
        meta["detector"] = detector
    else:
        meta["deepfaune_version"] = card.version
    return meta


# ---------------------------------------------------------------------------------------------
# Full-size classifier: ViT-L (DINOv2 /14 with a learned position table, or DINOv3 /16 with RoPE)
# ---------------------------------------------------------------------------------------------
def _randn(rng: np.random.Generator, *shape: int, std: float = 0.02) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)


def build_full_classifier(card: ModelCard, seed: int = 0, features: bool = True) -> onnx.ModelProto:
    """The card's ViT-L with random N(0, 0.02) weights, class-token head and bird head (BatchNorm folded), and the
    class token as `features` (left out with `features=False`)."""
    a = card.classifier.architecture
    rng = np.random.default_rng(seed)
    size, d, n = card.classifier.crop_size, a.embed_dim, card.classifier.num_classes
    grid = size // a.patch_size
    dh = d // a.heads
    prefix = 1 + a.register_tokens
    g = Graph()
    i64 = lambda v: g.const(v, dtype=np.int64)  # noqa: E731

    x = g.op("Conv", "input", g.const(_randn(rng, d, 3, a.patch_size, a.patch_size), stem="w"),
             g.const(np.zeros(d, np.float32), stem="b"), kernel_shape=[a.patch_size] * 2, strides=[a.patch_size] * 2)
    x = g.op("Transpose", g.op("Reshape", x, i64([0, d, -1])), perm=[0, 2, 1])  # [B, grid^2, D]
    batch = g.op("Slice", g.op("Shape", x), i64([0]), i64([1]))
    tokens = g.const(_randn(rng, 1, prefix, d), stem="prefix_tokens")  # class (+ register) tokens
    tokens = g.op("Expand", tokens, g.op("Concat", batch, i64([prefix, d]), axis=0))
    x = g.op("Concat", tokens, x, axis=1)
    if a.position == "learned":
        x = g.op("Add", x, g.const(_randn(rng, 1, prefix + grid * grid, d), stem="pos_embed"))
        cos = sin = None
    else:
        c, s = rope_tables(grid, dh)
        cos, sin = g.const(c, stem="rope_cos"), g.const(s, stem="rope_sin")

    def layer_norm(t: str) -> str:
        return g.op("LayerNormalization", t, g.const(np.ones(d, np.float32)), g.const(np.zeros(d, np.float32)),
                    axis=-1, epsilon=a.norm_eps)

    scale = g.const(np.float32(dh ** -0.5))
    for _ in range(a.depth):
        h = layer_norm(x)
        qkv = g.linear(h, _randn(rng, d, 3 * d), np.zeros(3 * d, np.float32) if a.qkv_bias else None)
        qkv = g.op("Transpose", g.op("Reshape", qkv, i64([0, 0, 3, a.heads, dh])), perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", qkv, i64(i), axis=0) for i in range(3))  # [B, H, T, Dh]
        if cos is not None:
            q, k = (rotate(g, t, prefix, cos, sin, dh // 2) for t in (q, k))
        att = g.op("Softmax", g.op("MatMul", g.op("Mul", q, scale), g.op("Transpose", k, perm=[0, 1, 3, 2])), axis=-1)
        o = g.op("Reshape", g.op("Transpose", g.op("MatMul", att, v), perm=[0, 2, 1, 3]), i64([0, 0, d]))
        o = g.linear(o, _randn(rng, d, d), np.zeros(d, np.float32))
        x = g.op("Add", x, g.op("Mul", o, g.const(np.full(d, 0.1, np.float32), stem="ls")))  # LayerScale
        h = g.gelu(g.linear(layer_norm(x), _randn(rng, d, a.mlp_dim), np.zeros(a.mlp_dim, np.float32)))
        h = g.linear(h, _randn(rng, a.mlp_dim, d), np.zeros(d, np.float32))
        x = g.op("Add", x, g.op("Mul", h, g.const(np.full(d, 0.1, np.float32), stem="ls")))
    cls = g.op("Gather", layer_norm(x), i64(0), axis=1)  # class token after the final norm [B, D]
    g.op("Add", g.op("MatMul", cls, g.const(_randn(rng, d, n), stem="w")), g.const(np.zeros(n, np.float32)),
         outputs=["logits"])
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n])]
    if card.bird_head is not None:
        hid, nb = card.bird_head.hidden, card.bird_head.classes
        h = g.gelu(g.linear(cls, _randn(rng, d, hid), _randn(rng, hid)))  # Linear + BatchNorm folded
        g.op("Add", g.op("MatMul", h, g.const(_randn(rng, hid, nb), stem="w")), g.const(np.zeros(nb, np.float32)),
             outputs=["bird_logits"])
        outputs.append(helper.make_tensor_value_info("bird_logits", TensorProto.FLOAT, ["batch", nb]))
    if features:
        outputs.append(features_output(g, cls, d))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])]
    return g.model(inputs, outputs, f"DeepFaune stand-in classifier (full-size {card.classifier.backbone})",
                   _metadata(card, "classifier", seed, full_size=True))


# ---------------------------------------------------------------------------------------------
# Full-size detector: YOLOv8s topology + DFL head (random weights), scores/boxes from the markers
# ---------------------------------------------------------------------------------------------
class _Yolo:
    """Conv-BN-SiLU blocks with BatchNorm folded into the convolution's bias."""

    def __init__(self, g: Graph, rng: np.random.Generator) -> None:
        self.g, self.rng = g, rng

    def conv(self, x: str, c1: int, c2: int, k: int = 1, s: int = 1, act: bool = True) -> str:
        w = _randn(self.rng, c2, c1, k, k, std=1.0 / math.sqrt(c1 * k * k))
        y = self.g.op("Conv", x, self.g.const(w, stem="w"), self.g.const(_randn(self.rng, c2), stem="b"),
                      kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4)
        return self.g.silu(y) if act else y

    def c2f(self, x: str, c1: int, c2: int, n: int, shortcut: bool) -> str:
        c = c2 // 2
        y = self.g.op("Split", self.conv(x, c1, 2 * c), self.g.const([c, c], dtype=np.int64), axis=1, outputs=2)
        parts = list(y)
        for _ in range(n):
            b = self.conv(self.conv(parts[-1], c, c, 3), c, c, 3)
            parts.append(self.g.op("Add", parts[-1], b) if shortcut else b)
        return self.conv(self.g.op("Concat", *parts, axis=1), (2 + n) * c, c2)

    def sppf(self, x: str, c1: int, c2: int) -> str:
        c = c1 // 2
        ys = [self.conv(x, c1, c)]
        for _ in range(3):
            ys.append(self.g.op("MaxPool", ys[-1], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2]))
        return self.conv(self.g.op("Concat", *ys, axis=1), 4 * c, c2)

    def up(self, x: str) -> str:
        return self.g.op("Resize", x, "", self.g.const([1.0, 1.0, 2.0, 2.0]), mode="nearest")


def _yolov8s_raw(g: Graph, rng: np.random.Generator, nc: int = 3, reg_max: int = 16) -> str:
    """YOLOv8s (width 0.50, depth 0.33) on `images`; returns the decoded [B, 4+nc, A] of strides 8/16/32."""
    y = _Yolo(g, rng)
    x = y.conv(y.conv("images", 3, 32, 3, 2), 32, 64, 3, 2)
    x = y.c2f(x, 64, 64, 1, True)
    p3 = y.c2f(y.conv(x, 64, 128, 3, 2), 128, 128, 2, True)
    p4 = y.c2f(y.conv(p3, 128, 256, 3, 2), 256, 256, 2, True)
    p5 = y.sppf(y.c2f(y.conv(p4, 256, 512, 3, 2), 512, 512, 1, True), 512, 512)
    h12 = y.c2f(g.op("Concat", y.up(p5), p4, axis=1), 768, 256, 1, False)
    o3 = y.c2f(g.op("Concat", y.up(h12), p3, axis=1), 384, 128, 1, False)
    o4 = y.c2f(g.op("Concat", y.conv(o3, 128, 128, 3, 2), h12, axis=1), 384, 256, 1, False)
    o5 = y.c2f(g.op("Concat", y.conv(o4, 256, 256, 3, 2), p5, axis=1), 768, 512, 1, False)
    c2, c3 = max(16, 128 // 4, reg_max * 4), max(128, min(nc, 100))
    boxes, scores = [], []
    for feat, ch, stride in ((o3, 128, 8), (o4, 256, 16), (o5, 512, 32)):
        reg = y.conv(y.conv(y.conv(feat, ch, c2, 3), c2, c2, 3), c2, 4 * reg_max, 1, act=False)
        cls = y.conv(y.conv(y.conv(feat, ch, c3, 3), c3, c3, 3), c3, nc, 1, act=False)
        box, score = g.yolo_decode(reg, cls, stride, reg_max, nc)
        boxes.append(box)
        scores.append(score)
    return g.op("Concat", g.op("Concat", *boxes, axis=2), g.op("Concat", *scores, axis=2), axis=1)


def build_full_detector(card: ModelCard, name: str, seed: int = 0) -> onnx.ModelProto:
    """Real YOLOv8s compute; output = marker head on the stride-32 anchors + 1e-6 x the random YOLO output."""
    rng = np.random.default_rng([seed, _detector_salt(name)])
    g = Graph()
    marker = _marker_head(g, "images", rng)  # [B, 7, A32]
    raw = _yolov8s_raw(g, rng)  # [B, 7, A8 + A16 + A32]
    a32 = g.op("Slice", g.op("Shape", marker), g.const([2], dtype=np.int64), g.const([3], dtype=np.int64))
    fine = g.op("Sub", g.op("Slice", g.op("Shape", raw), g.const([2], dtype=np.int64), g.const([3], dtype=np.int64)),
                a32)
    zeros = g.op("Mul", g.op("Slice", raw, g.const([0], dtype=np.int64), fine, g.const([2], dtype=np.int64)),
                 g.const(0.0))
    planted = g.op("Concat", zeros, marker, axis=2)
    # (1 - 1e-6) keeps the scores within 0..1
    g.op("Add", g.op("Mul", planted, g.const(1.0 - 1e-6)), g.op("Mul", raw, g.const(1e-6)), outputs=["output0"])
    inputs, outputs = detector_io()
    return g.model(inputs, outputs, f"DeepFaune stand-in detector {name} (full-size YOLOv8s, colour-marker scores)",
                   _metadata(card, "detector", seed, full_size=True, detector=name))


# ---------------------------------------------------------------------------------------------
# Writing a models directory
# ---------------------------------------------------------------------------------------------
def standin_name(onnx_name: str, full_size: bool = False) -> str:
    return ("standin-full-" if full_size else "standin-") + onnx_name


def write_standins(models_dir: Path, version: str, seed: int = 0, full_size: bool = False) -> Path:
    """Write stand-in classifier + detectors for a model version, register them, return the manifest path."""
    card = load_card(version)
    models_dir = Path(models_dir)
    installed = InstalledModels(models_dir)
    meta = {"standin": True, "source": "standin", "seed": seed, "full_size": full_size}

    classifier = build_full_classifier(card, seed) if full_size else build_small_classifier(card, seed)
    path = save(classifier, models_dir / standin_name(card.classifier.onnx, full_size))
    del classifier
    cls_name = installed.add_file(path, "classifier", card=version, **meta)

    detectors = {}
    for name, spec in card.detectors.items():
        model = build_full_detector(card, name, seed) if full_size else build_small_detector(card, name, seed)
        path = save(model, models_dir / standin_name(spec.onnx, full_size))
        detectors[name] = installed.add_file(path, "detector", detector=name, **meta)
    installed.set_version(version, classifier=cls_name, detectors=detectors)
    return installed.save()
