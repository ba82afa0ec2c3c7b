"""Site heads (issue 34): DeepFaune's own linear head read out of its ONNX classifier, and the adapted heads that
`deepfaune adapt` fits from people's labels, kept as small versioned files in the models directory's `heads/`.

A head maps the classifier's `features` (the class token after the final norm) to logits: W [K, D], b [K].  The
adapted head's first classes are DeepFaune's, in its order (so --exclude and the bird head still mean the same),
then the classes people named that DeepFaune lacks.  One file per head: a NumPy .npz holding W, b and a JSON
header (format, classes, the classifier it belongs to, label counts, date, the cross-validated verdict); loaded
without pickle, every field checked, as any file a person can edit.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..atomic import write_bytes_atomic
from ..errors import DeepfauneError

HEADS_FOLDER = "heads"
HEAD_FORMAT = 1
SUFFIX = ".head.npz"
MAX_HEAD_BYTES = 64 << 20  # a 1024-wide head of 500 classes is 2 MB
MAX_CLASSES = 500
NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class HeadError(DeepfauneError):
    """A head that cannot be read, found or written: the message names the file and says why."""


def base_head(onnx_path: Path, logits: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """DeepFaune's own head, (W [K, D], b [K]) float32, read from the graph: the node that makes `logits` must be
    a Gemm, or an Add of a MatMul and a constant, whose weights are initializers (as every export and stand-in
    writes it).  Anything else is refused: a head cannot start from weights it cannot see."""
    model = onnx.load(str(onnx_path), load_external_data=True)
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    made_by = {out: node for node in model.graph.node for out in node.output}
    node = made_by.get(logits)
    while node is not None and node.op_type == "Identity":
        node = made_by.get(node.input[0])
    why = f"{onnx_path}: the node that makes {logits!r} is no linear layer this reader knows"
    if node is None:
        raise HeadError(why)
    if node.op_type == "Gemm":
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or len(node.input) < 3 or node.input[1] not in consts or node.input[2] not in consts:
            raise HeadError(why)
        w = consts[node.input[1]].astype(np.float64) * float(attrs.get("alpha", 1.0))
        w = w if attrs.get("transB", 0) else w.T
        b = consts[node.input[2]].astype(np.float64).reshape(-1) * float(attrs.get("beta", 1.0))
    elif node.op_type == "Add":
        bias = next((i for i in node.input if i in consts), None)
        other = next((i for i in node.input if i != bias), None)
        matmul = made_by.get(other) if other is not None else None
        if bias is None or matmul is None or matmul.op_type != "MatMul" or matmul.input[1] not in consts:
            raise HeadError(why)
        w, b = consts[matmul.input[1]].astype(np.float64).T, consts[bias].astype(np.float64).reshape(-1)
    else:
        raise HeadError(why)
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise HeadError(f"{onnx_path}: the head's weights {w.shape} and bias {b.shape} do not fit together")
    return w.astype(np.float32), b.astype(np.float32)


@dataclass
class AdaptedHead:
    """A site head: logits = features @ W.T + b over `classes` (keys: DeepFaune's, then the new ones)."""

    name: str
    classes: list[str]  # keys, DeepFaune's first in its order, then the labels it lacks
    weight: np.ndarray  # float32 [K, D]
    bias: np.ndarray  # float32 [K]
    model_version: str
    classifier_sha256: str  # the classifier file whose features it reads and whose head it started from
    base_classes: int  # how many of `classes` are DeepFaune's
    counts: dict[str, int] = field(default_factory=dict)  # labelled crops per class
    created: str = ""  # ISO date and time
    strength: float = 0.0  # the pull toward DeepFaune's head
    verdict: dict[str, Any] = field(default_factory=dict)  # the cross-validated comparison (adapt.Verdict)
    source: str = ""  # what it was fitted on, to show

    def logits(self, features: np.ndarray) -> np.ndarray:
        """[rows, K] float32 logits of features [rows, D] (float16 or 32)."""
        x = np.asarray(features, dtype=np.float32)
        return (x @ self.weight.T + self.bias).astype(np.float32)

    @property
    def new_classes(self) -> list[str]:
        return self.classes[self.base_classes:]

    @property
    def helps(self) -> bool:
        """Whether cross-validation showed it better than DeepFaune's head (else it is never offered as default)."""
        return bool(self.verdict.get("helps"))

    def header(self) -> dict[str, Any]:
        return {"format": HEAD_FORMAT, "name": self.name, "classes": self.classes, "base_classes": self.base_classes,
                "model_version": self.model_version, "classifier_sha256": self.classifier_sha256,
                "counts": self.counts, "created": self.created, "strength": self.strength, "verdict": self.verdict,
                "source": self.source}


def heads_dir(models_dir: Path) -> Path:
    return Path(models_dir) / HEADS_FOLDER


def head_path(models_dir: Path, name: str) -> Path:
    if not NAME_RULE.match(name or ""):
        raise HeadError(f"head name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter "
                        "or digit")
    return heads_dir(models_dir) / f"{name}{SUFFIX}"


def save_head(models_dir: Path, head: AdaptedHead) -> Path:
    """Written whole or not at all; an existing head of that name is replaced (it is ours: heads/ holds only them)."""
    path = head_path(models_dir, head.name)
    buf = io.BytesIO()
    np.savez(buf, weight=head.weight.astype(np.float32), bias=head.bias.astype(np.float32),
             header=np.frombuffer(json.dumps(head.header(), sort_keys=True).encode(), dtype=np.uint8))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_bytes_atomic(path, buf.getvalue())
    except OSError as err:
        raise HeadError(f"{path}: cannot write the head ({err.strerror or err})") from None


def load_head(models_dir: Path, name: str) -> AdaptedHead:
    """The head called `name`, every field checked (a refusal names the file and what is wrong)."""
    path = head_path(models_dir, name)
    if not path.is_file():
        known = [h.name for h in list_heads(models_dir)[0]]
        raise HeadError(f"no adapted head {name!r} in {heads_dir(models_dir)} "
                        f"({'known: ' + ', '.join(known) if known else 'none yet: make one with `deepfaune adapt`'})")
    return read_head(path)


def read_head(path: Path) -> AdaptedHead:
    try:
        if path.stat().st_size > MAX_HEAD_BYTES:
            raise HeadError(f"{path}: larger than {MAX_HEAD_BYTES >> 20} MiB; not a head of ours")
        with np.load(path, allow_pickle=False) as data:
            weight, bias = data["weight"], data["bias"]
            header = json.loads(bytes(data["header"]).decode("utf-8"))
    except HeadError:
        raise
    except (OSError, ValueError, KeyError, UnicodeDecodeError, EOFError) as err:
        raise HeadError(f"{path}: not a readable head ({err})") from None
    bad = f"{path}: not a head of format {HEAD_FORMAT}"
    if not isinstance(header, dict) or header.get("format") != HEAD_FORMAT:
        raise HeadError(bad + " (another version of deepfaune-plugin wrote it?)")
    classes = header.get("classes")
    if (not isinstance(classes, list) or not 0 < len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) and 0 < len(c) <= 64 for c in classes) or len(set(classes)) != len(classes)):
        raise HeadError(bad + " (its classes)")
    if (weight.dtype != np.float32 or bias.dtype != np.float32 or weight.ndim != 2
            or weight.shape[0] != len(classes) or bias.shape != (len(classes),)
            or not (np.isfinite(weight).all() and np.isfinite(bias).all())):
        raise HeadError(bad + " (its weights do not match its classes)")
    base = header.get("base_classes")
    if not isinstance(base, int) or not 0 < base <= len(classes):
        raise HeadError(bad + " (base_classes)")
    counts = header.get("counts") or {}
    if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
        raise HeadError(bad + " (counts)")
    return AdaptedHead(name=str(header.get("name") or path.name[:-len(SUFFIX)]), classes=list(classes),
                       weight=weight, bias=bias, model_version=str(header.get("model_version", "")),
                       classifier_sha256=str(header.get("classifier_sha256", "")), base_classes=base,
                       counts={str(k): v for k, v in counts.items()}, created=str(header.get("created", "")),
                       strength=float(header.get("strength") or 0.0),
                       verdict=header.get("verdict") if isinstance(header.get("verdict"), dict) else {},
                       source=str(header.get("source", "")))


def list_heads(models_dir: Path) -> tuple[list[AdaptedHead], list[str]]:
    """(the heads in the models directory, by name; one line per file that could not be read)."""
    folder = heads_dir(models_dir)
    heads, problems = [], []
    if folder.is_dir():
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            try:
                heads.append(read_head(path))
            except HeadError as err:
                problems.append(str(err))
    return heads, problems
