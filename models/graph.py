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
from onnx import helper, numpy_helper

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


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path
