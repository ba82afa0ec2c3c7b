"""An ultralytics detector checkpoint (DeepFaune's YOLOv8s, MegaDetector v1000 sorrel's YOLO11s) as the ONNX contract's graph, with no torch and no
ultralytics: the pickled model is read as inert records (torchfree_pickle) and walked layer by layer.

An ultralytics model is a list of layers, each naming where its input comes from (`f`: -1 the previous layer,
or indices, Concat and Detect taking several). The walk follows that wiring and writes each layer's compute:
Conv (Conv2d + BatchNorm folded + SiLU; DWConv alike), C2f with its Bottlenecks, SPPF, nearest Upsample,
Concat, YOLO11's C3k2 / C3k and C2PSA (position-sensitive attention), and the Detect
head (box and class branches per stride, DFL expectation, anchors from the feature map's size so that height
and width stay dynamic, boxes as centre x, y, width, height in input pixels, class scores through a sigmoid):
the output `output0` [batch, 4 + 3, anchors] that ultralytics' own ONNX export gives. As ultralytics does, the
EMA weights are used when the checkpoint holds them. A layer of another kind is refused by name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from ..graph import Graph, detector_io
from .read import ConversionError
from .torchfree_pickle import MAX_CHECKPOINT_BYTES, InertRecord, load

PRODUCER = "deepfaune-plugin convert (torch-free)"
CLASSES = 3  # animal, person, vehicle


class Layer:
    """A pickled torch module (an InertRecord) seen through what the walk needs: its kind, attributes, children."""

    def __init__(self, record: Any, where: str):
        state = getattr(record, "state", None)
        if not isinstance(record, InertRecord) or not isinstance(state, dict):
            raise ConversionError(f"{where}: {record!r} is not a pickled torch module")
        self.record, self.state, self.where = record, state, where
        self.kind = record.qualified_name.rsplit(".", 1)[-1]

    def attr(self, name: str, default: Any = ...) -> Any:
        if name in self.state:
            return self.state[name]
        if default is ...:
            raise ConversionError(f"{self.where}: {self.kind} has no {name!r}")
        return default

    def child(self, name: str) -> "Layer":
        modules = self.state.get("_modules") or {}
        if modules.get(name) is None:
            raise ConversionError(f"{self.where}: {self.kind} has no sub-module {name!r}")
        return Layer(modules[name], f"{self.where}.{name}")

    def children(self) -> list["Layer"]:
        return [Layer(m, f"{self.where}.{n}") for n, m in (self.state.get("_modules") or {}).items() if m is not None]

    def tensor(self, name: str) -> np.ndarray | None:
        for group in ("_parameters", "_buffers"):
            value = (self.state.get(group) or {}).get(name)
            if value is not None:
                return np.asarray(value, dtype=np.float64)
        return None


class Walk:
    """The graph of one model: a builder per layer kind."""

    def __init__(self, g: Graph):
        self.g = g
        self.build: dict[str, Callable[[Layer, Any], str]] = {
            "Conv": self.conv, "DWConv": self.conv, "C2f": self.c2f, "Bottleneck": self.bottleneck,
            "SPPF": self.sppf, "Upsample": self.upsample, "Concat": self.concat, "Sequential": self.sequential,
            "Conv2d": self.conv2d, "C3k2": self.c2f, "C3k": self.c3, "C3": self.c3, "C2PSA": self.c2psa,
            "PSABlock": self.psa_block, "Attention": self.attention,
        }

    def i64(self, values) -> str:
        return self.g.const(values, dtype=np.int64)

    def layer(self, layer: Layer, x: Any) -> str:
        builder = self.build.get(layer.kind)
        if builder is None:
            raise ConversionError(f"{layer.where}: {layer.kind}, which the torch-free converter does not "
                                  f"build (it knows {', '.join(sorted(self.build))}, Detect); use --converter torch")
        return builder(layer, x)

    def conv2d(self, layer: Layer, x: str, scale: np.ndarray | None = None, shift: np.ndarray | None = None) -> str:
        weight = layer.tensor("weight")
        bias = layer.tensor("bias")
        bias = np.zeros(weight.shape[0]) if bias is None else bias
        if scale is not None:  # BatchNorm folded in: w * s, (b - mean) * s + beta
            weight, bias = weight * scale[:, None, None, None], bias * scale + shift
        k = [int(v) for v in layer.attr("kernel_size")]
        pad = [int(v) for v in layer.attr("padding")]
        return self.g.op("Conv", x, self.g.const(weight, stem="w"), self.g.const(bias, stem="b"), kernel_shape=k,
                         strides=[int(v) for v in layer.attr("stride")], pads=pad + pad,
                         dilations=[int(v) for v in layer.attr("dilation")], group=int(layer.attr("groups")))

    def conv(self, layer: Layer, x: str) -> str:
        bn = layer.child("bn")
        gamma, beta, mean, var = (bn.tensor(k) for k in ("weight", "bias", "running_mean", "running_var"))
        scale = gamma / np.sqrt(var + float(bn.attr("eps")))
        y = self.conv2d(layer.child("conv"), x, scale, beta - mean * scale)
        act = layer.child("act").kind
        if act == "SiLU":
            return self.g.silu(y)
        if act == "Identity":
            return y
        raise ConversionError(f"{layer.where}: activation {act}, which the torch-free converter does not build")

    def sequential(self, layer: Layer, x: str) -> str:
        for part in layer.children():
            x = self.layer(part, x)
        return x

    def bottleneck(self, layer: Layer, x: str) -> str:
        y = self.conv(layer.child("cv2"), self.conv(layer.child("cv1"), x))
        return self.g.op("Add", x, y) if layer.attr("add", False) else y

    def c2f(self, layer: Layer, x: str) -> str:
        c = int(layer.attr("c"))
        y = list(self.g.op("Split", self.conv(layer.child("cv1"), x), self.i64([c, c]), axis=1, outputs=2))
        for block in layer.child("m").children():
            y.append(self.layer(block, y[-1]))
        return self.conv(layer.child("cv2"), self.g.op("Concat", *y, axis=1))

    def c3(self, layer: Layer, x: str) -> str:
        inner = self.layer(layer.child("m"), self.conv(layer.child("cv1"), x))
        return self.conv(layer.child("cv3"), self.g.op("Concat", inner, self.conv(layer.child("cv2"), x), axis=1))

    def c2psa(self, layer: Layer, x: str) -> str:
        c = int(layer.attr("c"))
        a, b = self.g.op("Split", self.conv(layer.child("cv1"), x), self.i64([c, c]), axis=1, outputs=2)
        return self.conv(layer.child("cv2"), self.g.op("Concat", a, self.layer(layer.child("m"), b), axis=1))

    def psa_block(self, layer: Layer, x: str) -> str:
        add = bool(layer.attr("add", True))
        y = self.attention(layer.child("attn"), x)
        x = self.g.op("Add", x, y) if add else y
        y = self.layer(layer.child("ffn"), x)
        return self.g.op("Add", x, y) if add else y

    def attention(self, layer: Layer, x: str) -> str:
        """YOLO11's position-sensitive attention over the H*W cells of a map, heads along the channels."""
        heads, kd, hd = (int(layer.attr(a)) for a in ("num_heads", "key_dim", "head_dim"))
        shape = self.g.op("Shape", x)  # [B, C, H, W]
        qkv = self.g.op("Reshape", self.conv(layer.child("qkv"), x), self.i64([0, heads, 2 * kd + hd, -1]))
        q, k, v = self.g.op("Split", qkv, self.i64([kd, kd, hd]), axis=2, outputs=3)  # [B, heads, *, N]
        q = self.g.op("Mul", q, self.g.const(np.float32(layer.attr("scale"))))
        attn = self.g.op("Softmax", self.g.op("MatMul", self.g.op("Transpose", q, perm=[0, 1, 3, 2]), k), axis=-1)
        y = self.g.op("MatMul", v, self.g.op("Transpose", attn, perm=[0, 1, 3, 2]))  # [B, heads, hd, N]
        y = self.g.op("Reshape", y, shape)
        pe = self.conv(layer.child("pe"), self.g.op("Reshape", v, shape))
        return self.conv(layer.child("proj"), self.g.op("Add", y, pe))

    def sppf(self, layer: Layer, x: str) -> str:
        pool = layer.child("m")
        k, s, p = (int(pool.attr(a)) for a in ("kernel_size", "stride", "padding"))
        y = [self.conv(layer.child("cv1"), x)]
        for _ in range(int(layer.attr("n", 3))):
            y.append(self.g.op("MaxPool", y[-1], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4))
        out = self.conv(layer.child("cv2"), self.g.op("Concat", *y, axis=1))
        return self.g.op("Add", out, x) if layer.attr("add", False) else out

    def upsample(self, layer: Layer, x: str) -> str:
        if layer.attr("mode") != "nearest" or layer.attr("size", None) is not None:
            raise ConversionError(f"{layer.where}: only nearest upsampling by a scale factor is built")
        f = float(layer.attr("scale_factor"))
        return self.g.op("Resize", x, "", self.g.const([1.0, 1.0, f, f]), mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    def concat(self, layer: Layer, xs: list[str]) -> str:
        return self.g.op("Concat", *xs, axis=int(layer.attr("d", 1)))

    def detect(self, layer: Layer, feats: list[str]) -> str:
        nc, reg_max = int(layer.attr("nc")), int(layer.attr("reg_max", 16))
        if nc != CLASSES:
            raise ConversionError(f"{layer.where}: detects {nc} classes; DeepFaune's detectors have 3 "
                                  "(animal, person, vehicle)")
        strides = layer.attr("stride")
        strides = [float(s) for s in np.asarray(strides, dtype=np.float64).reshape(-1)]
        box_heads, cls_heads = layer.child("cv2").children(), layer.child("cv3").children()
        if not (len(box_heads) == len(cls_heads) == len(feats) == len(strides)):
            raise ConversionError(f"{layer.where}: {len(feats)} inputs, {len(box_heads)} box and {len(cls_heads)} "
                                  f"class branches, {len(strides)} strides")
        boxes, scores = [], []
        for feat, box_head, cls_head, stride in zip(feats, box_heads, cls_heads, strides):
            box, score = self.g.yolo_decode(self.layer(box_head, feat), self.layer(cls_head, feat), stride,
                                            reg_max, nc)
            boxes.append(box)
            scores.append(score)
        return self.g.op("Concat", self.g.op("Concat", *boxes, axis=2), self.g.op("Concat", *scores, axis=2), axis=1,
                         outputs=["output0"])


def model_layers(checkpoint: Any, where: str) -> list[Layer]:
    """The ordered layers of the checkpoint's model (EMA weights first, as ultralytics loads them)."""
    if not isinstance(checkpoint, dict) or (checkpoint.get("ema") is None and checkpoint.get("model") is None):
        raise ConversionError(f"{where} is not an ultralytics checkpoint (no 'model' or 'ema' inside)")
    model = Layer(checkpoint.get("ema") or checkpoint.get("model"), where)
    modules = model.child("model").state.get("_modules") or {}
    return [Layer(m, f"{where} layer {n}") for n, m in modules.items() if m is not None]


def build_detector(checkpoint: Any, where: str = "detector", metadata: dict[str, str] | None = None
                   ) -> onnx.ModelProto:
    layers = model_layers(checkpoint, where)
    if not layers or layers[-1].kind != "Detect":
        raise ConversionError(f"{where}: the last layer is {layers[-1].kind if layers else 'missing'}, not Detect")
    g = Graph()
    walk = Walk(g)
    outputs: list[str] = []
    x = "images"
    for n, layer in enumerate(layers):
        f = layer.attr("f", -1)
        pick = lambda i: x if i == -1 else outputs[i]  # noqa: E731
        inputs = [pick(i) for i in f] if isinstance(f, (list, tuple)) else pick(int(f))
        if layer.kind == "Detect":
            if n != len(layers) - 1:
                raise ConversionError(f"{layer.where}: a Detect layer before the last layer")
            walk.detect(layer, inputs)
            break
        x = walk.layer(layer, inputs)
        outputs.append(x)
    ins, outs = detector_io()
    doc = f"DeepFaune detector ({len(layers)} ultralytics layers), converted without torch"
    return g.model(ins, outs, doc, dict(metadata or {}), producer=PRODUCER)


def convert_detector(checkpoint: Path, out: Path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> Path:
    """Read the official .pt (torch-free) and write the ONNX detector to `out` (whole or not at all); its arrays
    may take `max_bytes` in memory at most."""
    from deepfaune_plugin.atomic import atomic_output

    model = build_detector(load(checkpoint, max_bytes), where=str(checkpoint), metadata={"converter": "torch-free"})
    with atomic_output(out) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return out
