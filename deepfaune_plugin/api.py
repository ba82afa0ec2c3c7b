"""What a backend and a host adapter are: the contracts plugins implement.

A *backend* turns media items into raw outputs (`RawResult`); it never decides labels.
A *host adapter* reads a manifest of media from a data manager's files and writes decisions
back into them; it never runs a model.  Both are plain objects registered through the
`register_backends` / `register_hosts` hooks.

This module is the whole surface a plugin imports (docs/plugins.md): the contracts, `hookimpl`, the data types,
and the helpers every host needs (safe paths, atomic output, media listing, DeepFaune's result table).
Stability: within a 0.x minor version nothing listed in `__all__` changes meaning or goes away; a name is only
removed after one minor version in which it still works and warns. Everything outside this module and
`deepfaune_plugin.testing` is internal and may change in any release.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from .atomic import StagedFile, atomic_output, write_bytes_atomic
from .dates import date_for
from .runlog import say
from .errors import BackendError, DeepfauneError, HostError, PluginError
from .exifdate import format_date
from .hookspecs import hookimpl
from .paths import UnsafePathError, own_folder, safe_relative
from .types import (ANIMAL, CATEGORY_NAMES, CONTAINER_DATE, EXIF_DATE, FAILED, FILE_DATE, HOST_DATE, IMAGE_SUFFIXES,
                    PERSON, UNDEFINED, VEHICLE, VIDEO_SUFFIXES, ClassTable, Decision, Detection, KnownBox, Manifest,
                    MediaItem, Problem, RawResult)
from .untrusted import UntrustedInputError, load_json, load_yaml, parse_json
from .walk import MEDIA_SUFFIXES, iter_media, iter_media_blocks

__all__ = [
    # contracts
    "Backend", "BackendDescription", "Host", "HostOption", "Predictor", "ResultWriter", "RunResults", "RunSettings",
    "DETECTOR_MODES", "MODEL_DETECTOR_MODES", "EXISTING_DETECTIONS", "hookimpl", "DeepfauneError", "HostError",
    "BackendError", "PluginError",
    # data
    "ANIMAL", "PERSON", "VEHICLE", "CATEGORY_NAMES", "ClassTable", "Decision", "Detection", "KnownBox", "Manifest",
    "MediaItem", "Problem", "RawResult", "UNDEFINED", "FAILED", "EXIF_DATE", "HOST_DATE", "CONTAINER_DATE", "FILE_DATE",
    # helpers
    "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "MEDIA_SUFFIXES", "iter_media", "iter_media_blocks", "safe_relative",
    "own_folder", "UnsafePathError", "atomic_output", "StagedFile", "write_bytes_atomic", "result_table",
    "write_table", "load_json", "load_yaml", "parse_json", "UntrustedInputError", "format_date", "date_for", "say",
]

#: Names served lazily: their modules import this one (RunResults), so importing them here would be a cycle.
_LAZY = {"result_table": "table", "write_table": "table"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"deepfaune_plugin.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: Modes that run a detector (a model card lists those its models support).
MODEL_DETECTOR_MODES = ("DF", "MDS", "DFbsMDS", "DFMDS")
#: No detector: classify the boxes the host supplies (MediaItem.known_boxes), e.g. MegaDetector's.
EXISTING_DETECTIONS = "existing"
DETECTOR_MODES = (*MODEL_DETECTOR_MODES, EXISTING_DETECTIONS)


@dataclass
class RunSettings:
    """Everything a user can set for a run; decisions are a pure function of raw outputs + these."""

    model_version: str = "1.4"
    detector_mode: str = "DFbsMDS"
    threshold: float = 0.8
    maxlag: float = 10.0
    lang: str = "fr"
    exclude: tuple[str, ...] = ()
    bird: bool = False
    models_dir: Path | None = None
    threads: int | None = None
    fast: bool = False  # int8 models (`deepfaune models quantize`), no onnxruntime memory arena: other answers
    backend: str = "deepfaune"
    scheduler: str | None = None  # a Dask scheduler address or "local:N": where inference runs, never what it gives
    device: str | None = None  # auto|cpu|cuda|directml|coreml|openvino; None: $DEEPFAUNE_DEVICE, else auto

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:  # 0: every animal labelled; NaN fails here too
            raise ValueError(f"threshold must be between 0 and 1 (inclusive), got {self.threshold}")
        if not math.isfinite(self.maxlag) or self.maxlag < 0:  # inf/nan would join a whole season (or nothing)
            raise ValueError(f"maxlag must be a number of seconds >= 0, got {self.maxlag}")
        if self.detector_mode not in DETECTOR_MODES:
            raise ValueError(
                f"unknown detector mode {self.detector_mode!r}; choose one of {', '.join(DETECTOR_MODES)}"
            )


@runtime_checkable
class Predictor(Protocol):
    """A backend's loaded models; yields one RawResult per item, in the items' order."""

    classes: ClassTable
    info: dict[str, Any]  # model version, file names and sha256, stand-in flag...

    def predict(self, items: Iterable[MediaItem]) -> Iterator[RawResult]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendDescription:
    """What a backend will compute, known without loading its models.

    `fingerprint` must change whenever raw outputs could change (model files, detector mode...):
    stored outputs are reused only under the same fingerprint.
    """

    classes: ClassTable
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)


class Backend:
    """Base of every backend: subclass it, set `name` and `description`, implement `open`.

    Defaults: `describe` returns None, so the run has no fingerprint and recomputes every file (no resume, no
    re-deciding from stored outputs). Return a `BackendDescription` to get both without loading models.
    """

    name: str = ""
    description: str = ""

    def open(self, settings: RunSettings) -> Predictor:
        """Load the models for `settings`: called once per run, when the first file needs computing."""
        raise NotImplementedError(f"backend {self.name!r} does not implement open()")

    def describe(self, settings: RunSettings) -> BackendDescription | None:
        """What `open(settings)` would compute, without loading it; None when the backend cannot say."""
        return None


@dataclass(frozen=True)
class HostOption:
    """A command-line option a host adds to `deepfaune run` (e.g. Timelapse's --write-ddb)."""

    name: str  # long option without dashes, e.g. "write-ddb"
    help: str
    flag: bool = False  # a boolean switch rather than a value
    default: Any = None
    multiple: bool = False  # may be given several times (collected in a list)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


@dataclass
class RunResults:
    """What a run produced, handed to the host adapter's write()."""

    settings: RunSettings
    classes: ClassTable
    raw: Mapping[str, RawResult]
    decisions: list[Decision]
    backend_info: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None
    started: datetime | None = None
    finished: datetime | None = None


@runtime_checkable
class ResultWriter(Protocol):
    """A host's outputs written as the run goes, for hosts that can (optional `Host.open_writer`).

    `add` receives the results of whole sequences, in DeepFaune's order (sequence numbers rising), so a
    season is never held in memory; `close` finishes the outputs (nothing may replace the user's files
    before it) and returns the files written; `abort` leaves every previous output as it was.
    `target` is the main output file, known before the first result (the review page goes beside it).
    """

    target: Path

    def add(self, batch: RunResults) -> None: ...

    def close(self, results: RunResults) -> list[Path]: ...

    def abort(self) -> None: ...


class Host:
    """Base of every host adapter: subclass it, set `name` and `description`, implement `detect`, `read` and
    either `write` (results given once, at the end) or `open_writer` (results given as they come).

    Defaults: no options; `priority` 10 (--host auto asks higher priorities first, the folder host has 0);
    `open_writer` returns None, so the run collects every result and calls `write` at the end.
    """

    name: str = ""
    description: str = ""
    #: Options this host adds to `deepfaune run`; their values reach read/write under their `dest` names.
    options: Sequence[HostOption] = ()
    priority: int = 10

    def detect(self, source: Path) -> bool:
        """True when `source` is this host's kind of data (used by --host auto)."""
        return False

    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        """The media of `source`; `options` holds the host's own options and "output" (the --output path or None)."""
        raise NotImplementedError(f"host {self.name!r} does not implement read()")

    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        """Write results back (to `options["output"]` when the user gave --output); return the files written."""
        raise NotImplementedError(f"host {self.name!r} does not implement write()")

    def open_writer(self, manifest: Manifest, options: Mapping[str, Any]) -> ResultWriter | None:
        """A writer that takes results as they come, or None to have them all given to `write` at the end.

        With a lazily listed manifest (`Manifest.from_blocks`) and a writer, a run holds one block of files
        at a time. A ValueError raised here (an output the host cannot write) stops the run before any model runs.
        """
        return None

    def release(self, manifest: Manifest) -> None:
        """The source was read but will not be written (`deepfaune evaluate`, `deepfaune review`): give back
        what `read` holds for its write, e.g. a lock on the user's data. Default: nothing is held."""

    def labels_unwritten(self, options: Mapping[str, Any]) -> str | None:
        """Why a write with `options` would put none of people's labels (`deepfaune review`) where the person's
        tool shows them, saying which option to add; None when it would (the default). Write back refuses then."""
        return None


class _PlainBackend(Backend):
    """A backend registered as a plain object rather than a `Backend` subclass (still accepted in 0.x): the
    defaults it lacks come from `Backend`; everything else is its own."""

    def __init__(self, plain: Any):
        self.plain = plain
        self.name = plain.name
        self.description = str(getattr(plain, "description", ""))

    def open(self, settings: RunSettings) -> Predictor:
        return self.plain.open(settings)

    def describe(self, settings: RunSettings) -> BackendDescription | None:
        describe = getattr(self.plain, "describe", None)
        return describe(settings) if describe is not None else None

    def __getattr__(self, attr: str) -> Any:
        return _forward(self, attr)


class _PlainHost(Host):
    """A host registered as a plain object rather than a `Host` subclass (still accepted in 0.x)."""

    def __init__(self, plain: Any):
        self.plain = plain
        self.name = plain.name
        self.description = str(getattr(plain, "description", ""))
        self.options = getattr(plain, "options", ())
        self.priority = getattr(plain, "priority", Host.priority)

    def detect(self, source: Path) -> bool:
        return self.plain.detect(source)

    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        return self.plain.read(source, options)

    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        return self.plain.write(manifest, results, options)

    def open_writer(self, manifest: Manifest, options: Mapping[str, Any]) -> ResultWriter | None:
        opener = getattr(self.plain, "open_writer", None)
        return opener(manifest, options) if opener is not None else None

    def release(self, manifest: Manifest) -> None:
        release = getattr(self.plain, "release", None)
        if release is not None:
            release(manifest)

    def __getattr__(self, attr: str) -> Any:
        return _forward(self, attr)


def _forward(wrapper: Any, attr: str) -> Any:
    """What the wrapped plain object has beyond the contract; an AttributeError (not a KeyError) while the
    wrapper itself is being built or unpickled (Dask sends backends to its workers)."""
    if "plain" not in wrapper.__dict__:
        raise AttributeError(attr)
    return getattr(wrapper.__dict__["plain"], attr)


def adopt_backend(obj: Any) -> Backend:
    """`obj` as a `Backend`: itself when it subclasses it, else wrapped with the documented defaults."""
    return obj if isinstance(obj, Backend) else _PlainBackend(obj)


def adopt_host(obj: Any) -> Host:
    """`obj` as a `Host`: itself when it subclasses it, else wrapped with the documented defaults."""
    return obj if isinstance(obj, Host) else _PlainHost(obj)
