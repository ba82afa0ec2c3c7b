"""deepfaune-run.json: what made a result, so that any output can be traced back to its run.

It names the plugin and model versions, the sha256 of the model files actually loaded, every
setting, the host and source, the times, the counts and failures, and each output written with
its own sha256 (so a table found later can be matched to the record of the run that wrote it).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._version import __version__
from ..atomic import write_bytes_atomic as write_atomic
from ..models.installed import sha256_file

RECORD_NAME = "deepfaune-run.json"
RECORD_FORMAT = "deepfaune-run/1"

#: Settings written only with the option they belong to (setting -> its switch): a run without that option
#: records exactly what it recorded before the option existed.
RECORDED_WITH = {"every_animal": "every_animal", "drop_repeats": "drop_repeats", "repeat_iou": "drop_repeats",
                 "repeat_min_images": "drop_repeats"}


def recorded_settings(settings) -> dict[str, Any]:
    """The run's settings as the record and the review page state them (`RECORDED_WITH` left out when off)."""
    values = dataclasses.asdict(settings)
    return {k: v for k, v in values.items() if k not in RECORDED_WITH or values[RECORDED_WITH[k]]}


def jsonable(value: Any) -> Any:
    """Paths, tuples, datetimes, sets and NumPy scalars as plain JSON values (recursively)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 with the local UTC offset (a naive time is taken as this machine's local time)."""
    if value is None:
        return None
    return value.astimezone().isoformat(timespec="seconds") if value.tzinfo is None else value.isoformat(timespec="seconds")


def _file_entry(path: Path) -> dict[str, Any]:
    path = Path(path)
    entry: dict[str, Any] = {"path": str(path.resolve())}
    try:
        entry.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    except OSError as err:
        entry["error"] = err.strerror or str(err)
    return entry


def _machine() -> dict[str, Any]:
    out = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    for name in ("onnxruntime", "numpy", "cv2", "PIL"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


def run_record(summary, command: Sequence[str] | str | None = None) -> dict[str, Any]:
    """The record as a dict (what write_run_record writes)."""
    results, manifest = summary.results, summary.manifest
    tally = summary.tally
    info = dict(results.backend_info or {})
    return {
        "format": RECORD_FORMAT,
        "plugin": {"name": "deepfaune-plugin", "version": __version__},
        "command": list(command) if command is not None and not isinstance(command, str) else command,
        "host": manifest.host,
        "source": str(Path(manifest.root).resolve()),
        "started": _iso(results.started),
        "finished": _iso(results.finished),
        "elapsed_s": round(float(summary.elapsed), 3),
        "settings": jsonable(recorded_settings(results.settings)),
        "models": {
            "backend": info.get("backend", results.settings.backend),
            "version": info.get("model_version", results.classes.version),
            "class_table": results.classes.version,
            "standin": results.standin,
            "files": jsonable(info.get("files", {})),
            **({"adapted_head": results.head} if results.head else {}),  # `run --adapted`: who decided
        },
        "backend_info": jsonable({k: v for k, v in info.items() if k != "files"}),
        "counts": {
            "files": tally.files,
            "sequences": tally.sequences,
            "failed": len(tally.failures),
            "skipped": summary.skipped,  # files of the source left without a result (missing, not fetched...)
            "with_warnings": len(tally.warned),  # files with a result and a `warning` (a truncated JPEG...)
            "complete": summary.complete,  # every file has a result: the run's exit status was 0
            "problems": len(summary.problems),
            "sequences_per_label": dict(sorted(tally.sequences_per_label.items())),
            "files_per_label": dict(sorted(tally.files_per_label.items())),
        },
        "failures": [{"file": rel, "reason": reason} for rel, reason in summary.failures],
        "warnings": [{"file": rel, "warning": text} for rel, text in tally.warned],
        "problems": [{"file": p.relpath, "reason": p.reason, "skipped": p.skipped} for p in summary.problems],
        "outputs": [_file_entry(p) for p in summary.written],
        "machine": _machine(),
    } | _repeats(summary)


def _repeats(summary) -> dict[str, Any]:
    """`--drop-repeats`: each place whose boxes were set aside (a run without it records none of this)."""
    groups = getattr(summary, "repeats", None)
    if groups is None:
        return {}
    return {"repeats": [{"station": g.station, "file": g.relpath, "box": [round(v, 5) for v in g.box],
                         "images": g.images, "files": list(g.files)} for g in groups]}


def write_run_record(summary, out_dir: Path, command: Sequence[str] | str | None = None,
                     name: str = RECORD_NAME) -> Path:
    """Write the record (deepfaune-run.json unless `name`) into out_dir (atomically) and return its path."""
    target = Path(out_dir) / name
    text = json.dumps(run_record(summary, command), indent=2, ensure_ascii=False)
    return write_atomic(target, (text + "\n").encode("utf-8"))
