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
    return str(args["backbone"]), int(args["num_classes"]), state, args


def bird_head_parts(data: Any, path: Any) -> dict[str, Any]:
    """The bird head's state_dict (a plain dict of tensors, keys 'bird_model.<i>.<param>')."""
    if not isinstance(data, dict) or not any(str(k).startswith("bird_model.") for k in data):
        raise CheckpointError(f"{path} is not a DeepFaune bird head (expected a state_dict with 'bird_model.' keys)")
    return dict(data)
