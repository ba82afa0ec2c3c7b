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
from .errors import DeepfauneError
from .exifdate import format_date
from .hookspecs import hookimpl
from .paths import UnsafePathError, own_folder, safe_relative
from .types import (ANIMAL, CATEGORY_NAMES, IMAGE_SUFFIXES, PERSON, VEHICLE, VIDEO_SUFFIXES, ClassTable, Decision,
                    Detection, KnownBox, Manifest, MediaItem, Problem, RawResult)
from .untrusted import UntrustedInputError, load_json, load_yaml, parse_json
from .walk import MEDIA_SUFFIXES, iter_media, iter_media_blocks

__all__ = [
    # contracts
    "Backend", "BackendDescription", "Host", "HostOption", "Predictor", "ResultWriter", "RunResults", "RunSettings",
    "DETECTOR_MODES", "MODEL_DETECTOR_MODES", "EXISTING_DETECTIONS", "hookimpl", "DeepfauneError",
    # data
    "ANIMAL", "PERSON", "VEHICLE", "CATEGORY_NAMES", "ClassTable", "Decision", "Detection", "KnownBox", "Manifest",
    "MediaItem", "Problem", "RawResult",
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


@runtime_checkable
class Backend(Protocol):
    """`open` loads models; an optional `describe(settings) -> BackendDescription` lets runs resume
    and re-decide from stored outputs without loading them (backends without it always recompute)."""

    name: str
    description: str

    def open(self, settings: RunSettings) -> Predictor: ...


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


@runtime_checkable
class Host(Protocol):
    name: str
    description: str
    options: Sequence[HostOption]

    def detect(self, source: Path) -> bool:
        """True when `source` is this host's kind of data (used by --host auto)."""

    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        """The media of `source`; `options` holds the host's own options and "output" (the --output path or None)."""

    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        """Write results back; return the files written.

        A host may instead offer `open_writer(manifest, options) -> ResultWriter` to take results as they
        come; with a lazily listed manifest (`Manifest.from_blocks`) a run then holds one block of files at a time.
        """
