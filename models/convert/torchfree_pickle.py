"""Reading PyTorch `.pt` checkpoints with no torch installed and without running pickled code.

A `torch.save` file is a zip: `<root>/data.pkl` (a pickle) plus `<root>/data/<key>` (raw storages).
The pickle is read by a restricted Unpickler: `find_class` answers only an allow-list (the tensor
rebuild functions, the storage types, OrderedDict and plain containers) and maps every other class
(ultralytics model objects, torchvision transforms, argparse.Namespace) to an inert record of its
state. Names that are functions outside the allow-list (`os.system`, `builtins.eval`, ...) are refused:
calling an inert record never calls the real callable, but refusing says plainly that the file is
not a checkpoint. Tensors come back as NumPy arrays; fp16/bf16 storages are widened to float32.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .formats import CheckpointError, InertGlobal

# storage class name -> numpy dtype of the raw bytes (little-endian, as torch writes them)
_STORAGES: dict[str, str] = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
#: Bounds on what one file may unpack to: the largest official file (DINOv3 ViT-L) is 1.2 GB, its pickle < 1 MB.
MAX_CHECKPOINT_BYTES = 8 << 30
MAX_PICKLE_BYTES = 256 << 20
#: What the arrays of a file may take in memory beyond what its architecture needs (a model card's
#: weight_bytes): fp16 widened, a few copies, buffers and tables a card does not count.
SLACK_BYTES = 64 << 20
#: A tensor with more elements than its storage (a zero stride repeats elements) is refused above this
#: size: torch writes such views for broadcast buffers, never for weights, and copying one out is how a
#: 371-byte file asks for gigabytes.
MAX_REPEATED_ELEMENTS = 1 << 16
# modules whose functions are never a checkpoint's business: naming them refuses the file
_REFUSED_MODULES = {"os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys", "shutil",
                    "importlib", "runpy", "socket", "pickle", "marshal", "types", "code", "pty", "webbrowser"}


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle names a callable outside the allow-list (it would run code)."""


def memory_bound(weight_bytes: int, copies: int = 1) -> int:
    """The most a file's arrays may take in memory when its architecture's weights are `weight_bytes` (float32)
    and the file may hold `copies` of them (an ultralytics file: the model and its EMA)."""
    return copies * weight_bytes * 3 // 2 + SLACK_BYTES


class _Budget:
    """What a file's arrays take in memory so far; refuses, before it is allocated, what goes over `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit, self.spent = limit, 0

    def spend(self, nbytes: int, what: str) -> None:
        if self.spent + nbytes > self.limit:
            raise _BadTensor(f"{what} would bring its arrays to {self.spent + nbytes:,} bytes in memory, over the "
                             f"{self.limit:,} its model needs (a damaged or crafted file; refused before reading it)")
        self.spent += nbytes


# a class named in a pickle (e.g. an ultralytics DetectionModel) becomes one of these: args and state, no code
InertRecord = InertGlobal


class _Storage:
    """A raw storage named by a persistent id; its bytes are decoded on first use."""

    def __init__(self, raw: bytes, dtype: str) -> None:
        self.raw, self.dtype = raw, dtype
        self._array: np.ndarray | None = None

    def array(self) -> np.ndarray:
        """The storage's elements (fp16/bf16 widened), decoded once however many tensors view it."""
        if self._array is None:
            if self.dtype == "bf16":
                self._array = (np.frombuffer(self.raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                flat = np.frombuffer(self.raw, dtype=self.dtype)
                self._array = flat.astype(np.float32) if self.dtype == "<f2" else flat
            self.raw = b""
        return self._array


class _BadTensor(ValueError):
    """A tensor the pickle describes outside its storage; `load` names the file."""


def _rebuild_tensor(budget: _Budget, storage: _Storage, offset: int, size: tuple, stride: tuple,
                    *_rest: Any) -> np.ndarray:
    flat = storage.array()
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    # the pickle gives the view's shape: a view outside its storage would read memory that is not the file's
    last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride) if n > 0)
    if (len(size) != len(stride) or offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride)
            or (0 not in size and last >= flat.size)):
        raise _BadTensor(f"a tensor of shape {size} reaches outside its storage of {flat.size} elements "
                         "(a damaged or crafted file)")
    elements = math.prod(size)
    if elements > max(flat.size, MAX_REPEATED_ELEMENTS):  # only a zero stride makes a view larger than its storage
        raise _BadTensor(f"a tensor of shape {size} repeats its storage's {flat.size} elements (stride {stride}): "
                         "no weight is stored so (a damaged or crafted file; refused before copying it)")
    if not size:
        return np.array(flat[offset])
    if 0 in size:
        return np.zeros(size, dtype=flat.dtype)
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride))
    if not view.flags.c_contiguous:  # a transposed or strided view: copied out
        budget.spend(elements * item, f"a tensor of shape {size}")
    return np.ascontiguousarray(view)


def _rebuild_parameter(data: np.ndarray, *_rest: Any) -> np.ndarray:
    return data


_REBUILD = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}  # given the file's budget
_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{(mod, name): obj for mod in ("builtins", "__builtin__")
       for name, obj in (("set", set), ("frozenset", frozenset), ("slice", slice))},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: Path, budget: _Budget) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.root, self.path, self.budget = archive, root, path, budget
        self.records: dict[str, type] = {}
        self.storages: dict[str, _Storage] = {}  # tensors that share a storage (views) share its bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _REBUILD:
            return functools.partial(_rebuild_tensor, self.budget)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGES:
            return name  # a storage type, only ever used inside a persistent id
        if module == "torch" and name in {"float32", "float16", "float64", "int64", "bfloat16", "bool"}:
            return name
        top = module.split(".", 1)[0]
        if top in _REFUSED_MODULES or not name[:1].isupper():
            raise UnsafeCheckpointError(
                f"{self.path}: refused, the pickle names {module}.{name}, which is not a tensor, container "
                f"or model class; a checkpoint never needs it (it would run code when loaded)")
        key = f"{module}.{name}"
        if key not in self.records:
            self.records[key] = type(name, (InertRecord,), {"qualified_name": key})
        return self.records[key]

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) >= 3):
            raise UnsafeCheckpointError(f"{self.path}: unknown persistent id {pid!r}")
        kind, key = pid[1], str(pid[2])
        if kind not in _STORAGES:
            raise UnsafeCheckpointError(f"{self.path}: unknown storage type {kind!r}")
        if key in self.storages:
            return self.storages[key]
        name = f"{self.root}data/{key}"
        try:
            declared = self.archive.getinfo(name).file_size  # what reading it may unpack to, at most
        except KeyError as err:
            raise CheckpointError(f"{self.path}: storage {key} missing from the archive (damaged file)") from err
        widened = 2 if _STORAGES[kind] in ("<f2", "bf16") else 1
        self.budget.spend(declared * widened, f"storage {key} ({declared:,} bytes unpacked)")
        raw = self.archive.read(name)
        self.storages[key] = _Storage(raw, _STORAGES[kind])
        return self.storages[key]


def load(path: Path | str, max_bytes: int = MAX_CHECKPOINT_BYTES) -> Any:
    """The checkpoint's object with tensors as NumPy arrays and foreign classes as InertRecords; its arrays
    may take `max_bytes` in memory at most (memory_bound of what the model card's architecture needs), refused
    before anything beyond is read or copied."""
    return _unpickle(Path(path), _Unpickler, _Budget(max_bytes))


@dataclasses.dataclass(frozen=True)
class TensorShape:
    """A tensor peek() did not read: its shape only."""

    shape: tuple[int, ...]


class _Peeker(_Unpickler):
    """The pickle alone: tensors stand as their shapes, no storage is read."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _REBUILD:
            return lambda _storage, _offset, size, *_rest: TensorShape(tuple(int(n) for n in size))
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> None:
        return None


def peek(path: Path | str) -> Any:
    """The checkpoint's object as load() gives it, but with TensorShapes for tensors: what a file is (its args,
    its keys, an ultralytics model's yaml) for the price of its pickle (under 1 MB for DeepFaune's files)."""
    return _unpickle(Path(path), _Peeker, _Budget(0))


def _unpickle(path: Path, reader: type[_Unpickler], budget: _Budget) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not a zip archive: legacy or damaged)") from err
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (no single data.pkl inside)")
        root = pickles[0][: -len("data.pkl")]
        total = sum(info.file_size for info in archive.infolist())
        if total > MAX_CHECKPOINT_BYTES or archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"{path} unpacks to {total:,} bytes: more than any DeepFaune checkpoint "
                                  f"({MAX_CHECKPOINT_BYTES:,} at most, {MAX_PICKLE_BYTES:,} of pickle)")
        try:
            return reader(archive.read(pickles[0]), archive, root, path, budget).load()
        except (UnsafeCheckpointError, CheckpointError):
            raise
        except zipfile.BadZipFile as err:  # a storage whose bytes fail the archive's CRC: damaged in transit
            raise CheckpointError(f"{path} is damaged ({err}); download it again") from err
        except _BadTensor as err:
            raise CheckpointError(f"{path}: {err}") from err
        except RecursionError as err:
            raise CheckpointError(f"{path}: its pickle nests deeper than any checkpoint does") from err
        except Exception as err:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err


def module_state_dict(record: InertRecord, prefix: str = "") -> dict[str, np.ndarray]:
    """The state_dict of a pickled nn.Module (read as an InertRecord): parameters and persistent
    buffers of the module tree, under the same dotted keys as torch's `Module.state_dict()`."""
    state = getattr(record, "state", None) if isinstance(record, InertRecord) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{record!r} is not a pickled torch module (no module state)")
    out: dict[str, np.ndarray] = {}
    skipped = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is not None and name not in skipped:
                out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out
