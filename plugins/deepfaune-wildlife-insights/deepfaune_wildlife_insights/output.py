"""Where the results go, written whole or not at all; the user's files are never changed.

Two shapes: one CSV (the export's images table with DeepFaune's identifications: the default,
`<export>/deepfaune_images.csv`, or `--output FILE.csv`), or a new folder holding a complete set
(`images.csv`, `deployments.csv`, `cameras.csv`, `projects.csv`), which `readWildlifeInsights(directory=)` and
a Wildlife Insights bulk upload read as they are.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from deepfaune_plugin.api import write_bytes_atomic

from .export import ExportError

#: The default copy's name: it does not start with "images", so neither this host nor camtrapR's
#: readWildlifeInsights(directory=) takes it for a second images table of the export.
DEFAULT_NAME = "deepfaune_images.csv"


def is_file_target(target: Path) -> bool:
    return target.suffix.lower() == ".csv"


def check_folder_target(target: Path, source: Path) -> None:
    """A new set goes to a folder that does not exist yet (or is empty), outside the source: a set inside an
    export would be a second images table in it for anyone who reads the folder tree."""
    resolved, root = target.resolve(), source.resolve()
    if resolved == root or root in resolved.parents:
        raise ExportError(f"--output {target}: inside {source}; a new Wildlife Insights set goes to a folder of its "
                          "own (readers list the export's CSVs recursively and would find two images tables)")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"--output {target}: exists and is not an empty folder; give a new folder (nothing is "
                          "replaced)")


def check_file_target(target: Path, originals: list[Path]) -> None:
    if any(target.resolve() == p.resolve() for p in originals):
        raise ExportError(f"--output {target}: that is the export's own table, which is never changed; give "
                          "another file name")
    if target.name.lower().startswith("images") and target.resolve().parent == originals[0].resolve().parent:
        raise ExportError(f"--output {target}: a second images*.csv beside {originals[0].name} would make the "
                          "export unreadable (one images table per folder); choose a name not starting with 'images'")


def write_file(target: Path, data: bytes) -> Path:
    return write_bytes_atomic(target, data)


def write_folder(target: Path, files: dict[str, bytes]) -> list[Path]:
    """Every file staged in a hidden folder beside `target`, which then takes its name in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if target.is_dir():
            target.rmdir()  # empty (checked): a rename cannot replace a folder on every system
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [target / name for name in files]
