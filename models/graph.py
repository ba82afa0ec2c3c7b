"""A tiny ONNX graph builder (opset 17, constants as initializers), shared by the stand-in models and the
torch-free converter: both write the real networks' compute with onnx.helper, so one builder keeps their
graphs alike (same op patterns, same names for a given sequence of calls, so the same bytes).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..engine.onnx_models import FEATURES  # the contract's name of the classifier's class-token output

OPSET = 17
IR_VERSION = 8  # the lowest IR that carries opset 17: loadable by older onnxruntime releases
_CHECK_LIMIT = 256 << 20


class Graph:
    """Nodes and initializers in the order they are made, named stem_N: the same calls give the same bytes."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def _name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, value, dtype=np.float32, stem: str = "c") -> str:
        name = self._name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int | Sequence[str] = 1, **attrs) -> str | list[str]:
        names = [self._name(op_type.lower()) for _ in range(outputs)] if isinstance(outputs, int) else list(outputs)
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self._name("n_" + op_type), **attrs))
        return names[0] if len(names) == 1 else names

    def model(self, inputs, outputs, doc: str, metadata: dict[str, str],
              producer: str = "deepfaune-plugin standins") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "deepfaune_standin", inputs, outputs)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer,
            doc_string=doc,
        )
        model.ir_version = IR_VERSION
        helper.set_model_props(model, metadata)
        # move the weights in one by one: a full-size ViT-L is 1.2 GB and must not be held three times
        self.inits.reverse()
        while self.inits:
            model.graph.initializer.append(self.inits.pop())
        if model.ByteSize() < _CHECK_LIMIT:  # the checker serialises a copy; big graphs are checked by loading
            onnx.checker.check_model(model)
        return model

    # -- common blocks --------------------------------------------------------------------
    def linear(self, x: str, w: np.ndarray, b: np.ndarray | None) -> str:
        """x @ w (+ b), w stored [in, out]; MatMul works on any leading dims."""
        y = self.op("MatMul", x, self.const(w, stem="w"))
        return y if b is None else self.op("Add", y, self.const(b, stem="b"))

    def gelu(self, x: str) -> str:
        """Exact (erf) GELU; onnxruntime fuses this pattern."""
        e = self.op("Erf", self.op("Div", x, self.const(math.sqrt(2.0))))
        return self.op("Mul", self.op("Mul", x, self.op("Add", e, self.const(1.0))), self.const(0.5))

    def silu(self, x: str) -> str:
        return self.op("Mul", x, self.op("Sigmoid", x))

    def avgpool(self, x: str, k: int, stride: int = 1, pad: int = 0) -> str:
        return self.op("AveragePool", x, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
                       count_include_pad=1)

    def yolo_decode(self, reg: str, cls: str, stride: float, reg_max: int, nc: int) -> tuple[str, str]:
        """One stride of an ultralytics Detect head, as its ONNX export computes it: the DFL expectation over
        `reg_max` bins per side, anchors at the cell centres (from the map's own size: H, W stay dynamic),
        boxes (centre x, centre y, width, height) in input pixels [B, 4, A], class scores sigmoid [B, nc, A]."""
        i64 = lambda v: self.const(v, dtype=np.int64)  # noqa: E731
        bins = self.const(np.arange(reg_max, dtype=np.float32).reshape(1, reg_max, 1, 1), stem="dfl")
        dist = self.op("Softmax", self.op("Transpose", self.op("Reshape", reg, i64([0, 4, reg_max, -1])),
                                          perm=[0, 2, 1, 3]), axis=1)
        dist = self.op("Reshape", self.op("Conv", dist, bins), i64([0, 4, -1]))
        ones = self.op("ReduceMax", self.op("Add", self.op("Mul", cls, self.const(0.0)), self.const(1.0)), axes=[1],
                       keepdims=1)
        ax = self.op("Add", self.op("CumSum", ones, i64(3)), self.const(-0.5))
        ay = self.op("Add", self.op("CumSum", ones, i64(2)), self.const(-0.5))
        anchors = self.op("Reshape", self.op("Concat", ax, ay, axis=1), i64([0, 2, -1]))
        lt = self.op("Slice", dist, i64([0]), i64([2]), i64([1]))
        rb = self.op("Slice", dist, i64([2]), i64([4]), i64([1]))
        x1y1, x2y2 = self.op("Sub", anchors, lt), self.op("Add", anchors, rb)
        centre = self.op("Mul", self.op("Add", x1y1, x2y2), self.const(0.5))
        box = self.op("Mul", self.op("Concat", centre, self.op("Sub", x2y2, x1y1), axis=1), self.const(float(stride)))
        return box, self.op("Sigmoid", self.op("Reshape", cls, i64([0, nc, -1])))


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path

def features_output(g: Graph, token: str, width: int) -> onnx.ValueInfoProto:
    """Expose `token` [B, width] as the output `features`; made after the heads, so their nodes, names and
    bytes are those of a graph without it (and the logits the same, bit for bit)."""
    g.op("Identity", token, outputs=[FEATURES])
    return helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["batch", int(width)])


def detector_io() -> tuple[list, list]:
    """The detector contract's signature: images [batch, 3, H, W] -> output0 [batch, 7, anchors]."""
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])]
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 7, "anchors"])]
    return inputs, outputs
