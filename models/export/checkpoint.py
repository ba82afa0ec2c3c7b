"""Reading DeepFaune's classifier checkpoints without torchvision and without running pickled code.

The official classifier file is `torch.save({'args': {...}, 'state_dict': {'base_model.<timm key>': ...},
'transform': <torchvision Compose>})`. The transform needs torchvision to unpickle, and a full
unpickle would run whatever the file names. Instead the file is read with torch's `weights_only`
unpickler, with every global that is not a plain tensor/container type (the torchvision classes,
their InterpolationMode) mapped to an inert stub that only records its state. DeepFaune itself
never uses the stored transform (it builds its own), so nothing is lost; we keep a description.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..convert.formats import PREFIX, CheckpointError, InertGlobal, bird_head_parts, classifier_parts
from .deps import require

__all__ = ["PREFIX", "CheckpointError", "InertGlobal", "ClassifierCheckpoint", "load_classifier_checkpoint",
           "load_bird_head", "safe_load", "describe"]

def _stub(qualified_name: str) -> type:
    return type(qualified_name.rsplit(".", 1)[-1], (InertGlobal,), {"qualified_name": qualified_name})


def safe_load(path: Path | str) -> Any:
    """torch.load with weights_only=True, unknown globals (e.g. torchvision's) replaced by inert stubs."""
    torch = require("torch")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except AttributeError as err:  # torch < 2.5
        raise CheckpointError(f"reading {path} safely needs torch >= 2.5 (found {torch.__version__})") from err
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({err})") from err
    stubs = [(_stub(name), name) for name in names]
    try:
        with torch.serialization.safe_globals(stubs):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err


def describe(obj: Any, depth: int = 0) -> str:
    """A short text of a stubbed object (e.g. the pickled transform), for the manifest."""
    if depth > 4:
        return "..."
    if isinstance(obj, InertGlobal):
        name = obj.qualified_name.rsplit(".", 1)[-1]
        state = getattr(obj, "state", None)
        if isinstance(state, dict):
            if isinstance(state.get("transforms"), (list, tuple)):
                return f"{name}([{', '.join(describe(t, depth + 1) for t in state['transforms'])}])"
            keys = [k for k in ("size", "interpolation", "max_size", "antialias", "mean", "std") if k in state]
            return f"{name}({', '.join(f'{k}={describe(state[k], depth + 1)}' for k in keys)})"
        args = getattr(obj, "args", ())
        if args:
            return f"{name}({', '.join(describe(a, depth + 1) for a in args)})"
        return f"{name}()"
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return repr([round(float(v), 4) for v in obj.reshape(-1).tolist()])
    if isinstance(obj, (list, tuple)):
        return repr(type(obj)(describe(v, depth + 1) if isinstance(v, InertGlobal) else v for v in obj))
    return repr(obj)


@dataclass
class ClassifierCheckpoint:
    backbone: str  # timm model name from args['backbone']
    num_classes: int
    state_dict: dict[str, Any]  # timm keys (the 'base_model.' prefix removed)
    transform: str  # description of the pickled transform ('' when absent)
    args: dict[str, Any]


def load_classifier_checkpoint(path: Path | str) -> ClassifierCheckpoint:
    """DeepFaune's classifier checkpoint: args, state_dict under 'base_model.', pickled transform."""
    data = safe_load(path)
    backbone, num_classes, state, args = classifier_parts(data, path)
    _check_finite(path, state)
    transform = describe(data["transform"]) if data.get("transform") is not None else ""
    return ClassifierCheckpoint(backbone, num_classes, state, transform,
                                {k: v for k, v in args.items() if isinstance(v, (str, int, float, bool))})


def load_bird_head(path: Path | str) -> dict[str, Any]:
    """The bird head's state_dict (a plain dict of tensors, keys 'bird_model.<i>.<param>')."""
    data = bird_head_parts(safe_load(path), path)
    _check_finite(path, data)
    return data


def _check_finite(path: Path | str, state: dict[str, Any]) -> None:
    """Damaged bytes inside a weight tensor load without error (the archive is not checksummed) but
    usually decode as NaN or infinity: refuse them here rather than as a parity failure later."""
    torch = require("torch")
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds non-finite weights in {', '.join(bad[:3])}: a damaged file")
