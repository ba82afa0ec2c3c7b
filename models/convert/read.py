"""DeepFaune's official files read into arrays, torch-free: the classifier checkpoint and the bird head.

The same checks as the torch path (models/export/checkpoint.py) with the same messages: a dict with `args`
(backbone, num_classes) and `state_dict` under `base_model.`; a bird head with `bird_model.` keys; no NaN or
infinity in any weight (damaged bytes inside a tensor load without error).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .formats import CheckpointError, bird_head_parts, classifier_parts
from .torchfree_pickle import MAX_CHECKPOINT_BYTES, load


class ConversionError(CheckpointError):
    """Official arrays that cannot become the ONNX graph: the message names the file and what is wrong."""


@dataclass
class Classifier:
    backbone: str
    num_classes: int
    state_dict: dict[str, np.ndarray]  # timm keys (the 'base_model.' prefix removed)


def read_classifier(path: Path | str, max_bytes: int = MAX_CHECKPOINT_BYTES) -> Classifier:
    """`max_bytes`: what its arrays may take in memory (torchfree_pickle.memory_bound of the card's need)."""
    backbone, num_classes, state, _ = classifier_parts(load(path, max_bytes), path)
    _check_arrays(path, state)
    return Classifier(backbone, num_classes, state)


def read_bird_head(path: Path | str, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict[str, np.ndarray]:
    data = bird_head_parts(load(path, max_bytes), path)
    _check_arrays(path, data)
    return data


def _check_arrays(path: Path | str, state: dict[str, Any]) -> None:
    wrong = [str(k) for k, v in state.items() if not isinstance(v, np.ndarray)]
    if wrong:
        raise CheckpointError(f"{path}: {', '.join(wrong[:3])} are not tensors")
    bad = [k for k, v in state.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds non-finite weights in {', '.join(bad[:3])}: a damaged file")
