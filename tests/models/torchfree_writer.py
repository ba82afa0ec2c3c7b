"""Checkpoints in torch.save's zip format written without torch: a pickle whose tensors name storages kept
beside it (`archive/data/<key>`), and classes from ultralytics or torch standing in by name. Attacker files
(a storage that unpacks to gigabytes, a tensor viewing one element 9e8 times) are a few lines with it.
"""
from __future__ import annotations

import collections
import contextlib
import io
import pickle
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

_KINDS = {"<f4": "FloatStorage", "<f2": "HalfStorage", "<i8": "LongStorage"}


@dataclass
class Tensor:
    """A tensor to write: `array`'s bytes as storage `key`, viewed with `shape`/`stride` (its own by default);
    `unpacked` writes that many zero bytes as the storage instead (a storage that unpacks large)."""

    array: np.ndarray
    key: str
    shape: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    unpacked: int | None = None

    def __reduce__(self):
        shape = self.shape if self.shape is not None else self.array.shape
        stride = self.stride if self.stride is not None else tuple(s // self.array.itemsize
                                                                   for s in self.array.strides)
        return (_rebuild_tensor_v2, (_StorageRef(self), 0, tuple(shape), tuple(stride), False,
                                     collections.OrderedDict()))


@dataclass
class _StorageRef:
    tensor: Tensor


def _rebuild_tensor_v2(*args):  # stands for torch._utils._rebuild_tensor_v2 while pickling
    raise AssertionError("never called")


class Module:
    """A pickled nn.Module stand-in: pickled as `<module>.<name>` with `state` as its __dict__."""

    def __init__(self, state: dict):
        self.__dict__.update(state)


@contextlib.contextmanager
def _stand_ins(classes: dict[str, type]) -> Iterator[None]:
    """torch, torch._utils and the modules of `classes` ("ultralytics.nn.tasks.DetectionModel") in sys.modules
    while pickling; whatever was there before restored after."""
    modules: dict[str, types.ModuleType] = {}
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    for kind in _KINDS.values():
        setattr(torch, kind, type(kind, (), {"__module__": "torch"}))
    modules.update({"torch": torch, "torch._utils": utils})
    for qualified, cls in classes.items():
        module, _, name = qualified.rpartition(".")
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # its parent packages too: importing a module imports them first
            modules.setdefault(".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
        cls.__module__, cls.__qualname__, cls.__name__ = module, name, name
        setattr(modules[module], name, cls)
    with swapped_modules(modules):
        yield


@contextlib.contextmanager
def swapped_modules(modules: dict[str, types.ModuleType]) -> Iterator[None]:
    """`modules` in sys.modules for the block; whatever was there before restored after."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def write(path: Path | str, obj: Any, classes: dict[str, type] | None = None) -> Path:
    """`obj` (Tensors inside) as torch.save writes it; `classes`: qualified name -> class to pickle by that name."""
    path = Path(path)
    storages: dict[str, Tensor] = {}
    buffer = io.BytesIO()
    with _stand_ins(classes or {}):
        torch = sys.modules["torch"]

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _StorageRef):
                    t = obj.tensor
                    storages[t.key] = t
                    kind = getattr(torch, _KINDS[t.array.dtype.str])
                    return ("storage", kind, t.key, "cpu", t.array.size)
                return None

        Pickler(buffer, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", buffer.getvalue())
        for key, t in storages.items():
            if t.unpacked is None:
                z.writestr(f"archive/data/{key}", t.array.tobytes())
                continue
            with z.open(f"archive/data/{key}", "w", force_zip64=True) as out:
                chunk, left = bytes(1 << 20), t.unpacked
                while left > 0:
                    out.write(chunk[:left])
                    left -= len(chunk)
    return path
