"""The detector and classifier as ONNX Runtime sessions, checked against the ONNX contract at load.

Contract (the same for exported weights, stand-ins and anyone's own models):
- detector: input ``images`` float32 [1,3,H,W] (H, W dynamic multiples of 32, RGB/255); output
  ``output0`` float32 [1, 4+3, A]: cx, cy, w, h in input pixels, then animal/person/vehicle scores.
- classifier: input ``input`` float32 [B,3,S,S] (ImageNet-normalised); output ``logits`` [B,N] and,
  with a bird head, ``bird_logits`` [B,8]; and ``features`` [B,D], the class token the heads read (issue 34;
  optional: a model installed before it has none, and then no features are kept).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from ..errors import BackendError
from ..types import Detection
from .detection import postprocess
from .letterbox import Letterbox, letterbox
from .providers import CPU, DeviceChoice, check_started, provider_options

DETECTOR_ROWS = 4 + 3
BIRD_CLASSES = 8
FEATURES = "features"  # the classifier's optional output: the class token after the final norm


class ModelContractError(BackendError):
    """A model file that does not follow the ONNX contract; the message names the file."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path = str(path)
        self.what = what
        super().__init__(f"{self.path}: {what}")


#: Whether onnxruntime's idle worker threads busy-wait for the next operator.  Off by default: the
#: decode thread works while the models run, and spinning workers take its core (measured in
#: benchmarks/RESULTS.md, issue 10).  DEEPFAUNE_ORT_SPINNING=1 turns it back on.
ALLOW_SPINNING = os.environ.get("DEEPFAUNE_ORT_SPINNING", "0") == "1"


def session_options(threads: int | None = None, spinning: bool | None = None,
                    low_memory: bool = False) -> ort.SessionOptions:
    """One image at a time, all cores on each operator: what a batch run on a laptop wants.

    `low_memory` turns off onnxruntime's CPU memory arena: 160 MB less peak RSS with the int8
    models of --fast, for about 8 % more time (benchmarks/RESULTS.md, issue 10).
    """
    opts = ort.SessionOptions()
    if low_memory:
        opts.enable_cpu_mem_arena = False
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    allow = ALLOW_SPINNING if spinning is None else spinning
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow else "0")
    return opts


def _open(path: str | os.PathLike, threads: int | None, low_memory: bool = False,
          device: DeviceChoice | None = None) -> tuple[ort.InferenceSession, DeviceChoice]:
    """A session on `device` (default: the CPU) and the device it really runs on (see providers.py)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    device = device or DeviceChoice("cpu", "cpu", (CPU,))
    try:
        with warnings.catch_warnings():  # a provider onnxruntime lacks: check_started says it in our words
            warnings.filterwarnings("ignore", "Specified provider", UserWarning)
            session = ort.InferenceSession(str(path), sess_options=session_options(threads, low_memory=low_memory),
                                           providers=list(device.providers),
                                           provider_options=provider_options(device))
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        raise ModelContractError(path, f"not a loadable ONNX model ({err})") from err
    return session, check_started(device, session.get_providers(), path.name)


def _by_name(args: Sequence[ort.NodeArg], name: str) -> ort.NodeArg | None:
    return next((a for a in args if a.name == name), None)


def _require(path, args: Sequence[ort.NodeArg], name: str, kind: str, rank: int) -> ort.NodeArg:
    arg = _by_name(args, name)
    if arg is None:
        found = ", ".join(a.name for a in args) or "none"
        raise ModelContractError(path, f"{kind} {name!r} missing (the model has: {found})")
    if len(arg.shape) != rank:
        raise ModelContractError(path, f"{kind} {name!r} must have rank {rank}, has shape {arg.shape}")
    if arg.type != "tensor(float)":
        raise ModelContractError(path, f"{kind} {name!r} must be float32, is {arg.type}")
    return arg


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxDetector:
    """A YOLOv8-style detector: BGR image in, DeepFaune detections (original pixels) out."""

    def __init__(self, path: str | os.PathLike, size: int = 960, conf: float = 0.6, source: str = "DF",
                 threads: int | None = None, low_memory: bool = False, device: DeviceChoice | None = None):
        self.path = Path(path)
        self.size, self.conf, self.source = size, conf, source
        self.session, self.device = _open(self.path, threads, low_memory, device)
        inp = _require(self.path, self.session.get_inputs(), "images", "input", 4)
        out = _require(self.path, self.session.get_outputs(), "output0", "output", 3)
        if _static(inp.shape[1]) not in (None, 3):
            raise ModelContractError(self.path, f"input 'images' must have 3 channels, has shape {inp.shape}")
        if _static(inp.shape[2]) or _static(inp.shape[3]):
            raise ModelContractError(self.path, "input 'images' must have dynamic height and width "
                                                f"(export with dynamic axes), has shape {inp.shape}")
        if _static(out.shape[1]) not in (None, DETECTOR_ROWS):
            raise ModelContractError(self.path, f"output 'output0' must have {DETECTOR_ROWS} rows "
                                                f"(4 box + 3 classes), has shape {out.shape}")

    def prepare(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The network input for an image; pure pixel work, safe on another thread than `detect`."""
        return letterbox(image_bgr, self.size)

    def __call__(self, image_bgr: np.ndarray) -> list[Detection]:
        return self.detect(*self.prepare(image_bgr))

    def detect(self, tensor: np.ndarray, lb: Letterbox) -> list[Detection]:
        """Detections from a tensor made by `prepare` (or `letterbox` at this detector's size)."""
        (output,) = self.session.run(["output0"], {"images": tensor})
        if output.ndim != 3 or output.shape[:2] != (1, DETECTOR_ROWS):
            raise ModelContractError(self.path, f"output 'output0' has shape {output.shape}, "
                                                f"expected [1, {DETECTOR_ROWS}, anchors]")
        return postprocess(output, lb, self.conf, source=self.source)


@dataclass(frozen=True)
class ClassifierOutputs:
    """Everything the classifier gives for a batch; `features` is None for a model without that output."""

    logits: np.ndarray  # [B, N]
    bird_logits: np.ndarray | None  # [B, 8]
    features: np.ndarray | None  # [B, D] float32


class OnnxClassifier:
    """The species classifier: normalised crops in, raw logits (and bird-head logits, and features) out."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, size: int | None = None,
                 low_memory: bool = False, device: DeviceChoice | None = None):
        self.path = Path(path)
        self.session, self.device = _open(self.path, threads, low_memory, device)
        inp = _require(self.path, self.session.get_inputs(), "input", "input", 4)
        outputs = self.session.get_outputs()
        logits = _require(self.path, outputs, "logits", "output", 2)
        bird = _by_name(outputs, "bird_logits")
        if _static(inp.shape[1]) not in (None, 3):
            raise ModelContractError(self.path, f"input 'input' must have 3 channels, has shape {inp.shape}")
        h, w = _static(inp.shape[2]), _static(inp.shape[3])
        if h != w:
            raise ModelContractError(self.path, f"input 'input' must be square [B,3,S,S], has shape {inp.shape}")
        if h is not None and size is not None and size != h:
            raise ModelContractError(self.path, f"model input is {h} px but size={size} was asked")
        if h is None:
            if size is None:
                raise ModelContractError(self.path, "input size is dynamic: pass the crop size (size=...)")
            h = int(size)
        self.size: int = h
        n = _static(logits.shape[1])
        if n is None:
            raise ModelContractError(self.path, "output 'logits' must have a fixed class count, "
                                                f"has shape {logits.shape}")
        self.num_classes: int = n
        if bird is not None:
            _require(self.path, outputs, "bird_logits", "output", 2)
            if _static(bird.shape[1]) != BIRD_CLASSES:
                raise ModelContractError(self.path, f"output 'bird_logits' must be [B,{BIRD_CLASSES}], "
                                                    f"has shape {bird.shape}")
        self.has_bird_head: bool = bird is not None
        self._outputs = ["logits", "bird_logits"] if self.has_bird_head else ["logits"]
        #: Whether the model gives `features` (models installed before issue 34 do not: install them again).
        self.has_features: bool = _by_name(outputs, FEATURES) is not None
        if self.has_features:
            _require(self.path, outputs, FEATURES, "output", 2)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """float32 [B,3,S,S] -> (logits [B,N], bird_logits [B,8] or None): `classify` without the features."""
        out = self.classify(batch)
        return out.logits, out.bird_logits

    def classify(self, batch: np.ndarray) -> ClassifierOutputs:
        """float32 [B,3,S,S] -> logits, bird logits and features (None where the model lacks them), one pass."""
        names = self._outputs + ([FEATURES] if self.has_features else [])
        results = self.session.run(names, {"input": self._checked(batch)})
        return ClassifierOutputs(results[0], results[1] if self.has_bird_head else None,
                                 results[-1] if self.has_features else None)

    def _checked(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        expected = (3, self.size, self.size)
        if batch.ndim != 4 or batch.shape[1:] != expected or batch.dtype != np.float32:
            raise ValueError(f"expected float32 [B,3,{self.size},{self.size}], got {batch.dtype} {batch.shape}")
        return batch
