"""The structure of DeepFaune's official files, whichever unpickler read them (torch's weights_only loader in
models/export, the torch-free one here): one owner for what a classifier checkpoint and a bird head must hold,
and for the messages that say what a file lacks.
"""
from __future__ import annotations

from typing import Any

from deepfaune_plugin.errors import DeepfauneError

PREFIX = "base_model."


class CheckpointError(DeepfauneError):
    """A file that is not a DeepFaune checkpoint of the expected kind."""


class InertGlobal:
    """Stands for a class or function named in a pickle; records what the pickle gives it, runs nothing."""

    qualified_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name}>"


def classifier_parts(data: Any, path: Any) -> tuple[str, int, dict[str, Any], dict[str, Any]]:
    """(backbone, num_classes, state_dict under timm's keys, args) of a loaded classifier checkpoint:
    `{'args': {'backbone', 'num_classes'}, 'state_dict': {'base_model.<timm key>': tensor}, 'transform': ...}`."""
    if not isinstance(data, dict) or "state_dict" not in data or "args" not in data:
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path} is not a DeepFaune classifier checkpoint "
                              f"(expected a dict with 'args' and 'state_dict', found {found})")
    args = data["args"]
    if isinstance(args, InertGlobal):  # e.g. an argparse.Namespace
        args = dict(getattr(args, "state", None) or {})
    if not isinstance(args, dict) or "backbone" not in args or "num_classes" not in args:
        raise CheckpointError(f"{path}: 'args' must hold 'backbone' and 'num_classes'")
    raw = data["state_dict"]
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(raw).__name__}, not a dict of tensors")
    outside = [str(k) for k in raw if not str(k).startswith(PREFIX)]
    if outside:
        raise CheckpointError(f"{path}: state_dict keys outside '{PREFIX}': {', '.join(outside[:5])}")
    state = {k[len(PREFIX):]: v for k, v in raw.items()}
    num_classes = int(args["num_classes"])
    _check_head(state, num_classes, path)
    return str(args["backbone"]), num_classes, state, args


def _check_head(state: dict[str, Any], num_classes: int, path: Any) -> None:
    """DeepFaune builds its model with `args['num_classes']` outputs and loads the state_dict into it: a head of
    another size fails there (size mismatch), so it is refused here too, before an ONNX of the wrong width is
    written that only a run would find out."""
    for key in ("head.weight", "head.bias"):
        value = state.get(key)
        if value is None:
            raise CheckpointError(f"{path}: no {PREFIX}{key} in its state_dict: not a DeepFaune classifier")
        rows = int(value.shape[0]) if len(value.shape) else 0
        if rows != num_classes:
            raise CheckpointError(f"{path}: its head has {rows} classes ({PREFIX}{key} is {tuple(value.shape)}) but "
                                  f"its args say num_classes {num_classes}; DeepFaune's loader refuses such a file "
                                  "(a damaged or altered checkpoint)")


def bird_head_parts(data: Any, path: Any) -> dict[str, Any]:
    """The bird head's state_dict (a plain dict of tensors, keys 'bird_model.<i>.<param>')."""
    if not isinstance(data, dict) or not any(str(k).startswith("bird_model.") for k in data):
        raise CheckpointError(f"{path} is not a DeepFaune bird head (expected a state_dict with 'bird_model.' keys)")
    return dict(data)


def detector_family(architecture: str) -> str:
    """An ultralytics architecture without its scale letter ("yolo11s" -> "yolo11", "yolov8n" -> "yolov8"): what a
    file's own yaml and a card can both say, whatever size a test or a retraining chose."""
    return architecture[:-1] if architecture[-1:] in "nsmlx" and architecture[-2:-1].isdigit() else architecture


def describe(data: Any) -> tuple[str, str | None]:
    """What a checkpoint (as read by torch-free peek or load) holds, by its content: ("classifier", backbone),
    ("bird_head", None), ("detector", ultralytics architecture family or None), or ("unknown", None)."""
    if not isinstance(data, dict):
        return "unknown", None
    if "args" in data and "state_dict" in data:
        args = data["args"]
        args = dict(getattr(args, "state", None) or {}) if isinstance(args, InertGlobal) else args
        return "classifier", str(args.get("backbone")) if isinstance(args, dict) else None
    if any(str(k).startswith("bird_model.") for k in data):
        return "bird_head", None
    model = data.get("ema") or data.get("model")
    state = getattr(model, "state", None) if isinstance(model, InertGlobal) else None
    if isinstance(state, dict) and isinstance(state.get("yaml"), dict):
        stem = str(state["yaml"].get("yaml_file") or "").replace("\\", "/").rsplit("/", 1)[-1]
        stem = stem.rsplit(".", 1)[0].lower()
        return "detector", detector_family(stem) if stem else None
    return "unknown", None
