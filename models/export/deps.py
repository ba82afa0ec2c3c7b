"""The optional export dependencies (torch, timm, ultralytics), imported on demand with a clear message.

Exporting is a one-off step on the user's machine; running the models needs none of these.
ultralytics is imported with its network features and auto-installer off, and without the
process-wide thread settings it makes on import (OMP_NUM_THREADS=1, cv2.setNumThreads(0)).
"""
from __future__ import annotations

import importlib
import os
import tempfile
from types import ModuleType

from deepfaune_plugin.errors import DeepfauneError

INSTALL_HINT = "pip install 'deepfaune-plugin[export]'"


class ExportDepsMissing(DeepfauneError):
    """torch, timm or ultralytics is not importable."""


def _missing(name: str, err: BaseException) -> ExportDepsMissing:
    return ExportDepsMissing(
        f"exporting DeepFaune's PyTorch weights to ONNX needs {name}, which cannot be imported ({err}); "
        f"install the export extra: {INSTALL_HINT} "
        f"(on a machine without a GPU, the CPU build of torch is enough)"
    )


def require(name: str) -> ModuleType:
    """Import torch or timm, or raise ExportDepsMissing saying how to get it."""
    try:
        return importlib.import_module(name)
    except Exception as err:  # ImportError, or a broken install (e.g. torchvision built for another torch)
        raise _missing(name, err) from err


def require_ultralytics() -> ModuleType:
    """Import ultralytics offline, without auto-installs, keeping the caller's thread settings."""
    require("torch")
    for key, value in (("YOLO_OFFLINE", "1"), ("YOLO_AUTOINSTALL", "false"), ("YOLO_VERBOSE", "false")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), "deepfaune-plugin-ultralytics"))
    omp = os.environ.get("OMP_NUM_THREADS")
    try:
        import cv2

        cv2_threads = cv2.getNumThreads()
    except ImportError:  # pragma: no cover - cv2 is a core dependency
        cv2, cv2_threads = None, None
    try:
        module = importlib.import_module("ultralytics")
    except Exception as err:
        raise _missing("ultralytics", err) from err
    finally:
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        if cv2 is not None:
            cv2.setNumThreads(cv2_threads)
    return module


def tool_versions() -> dict[str, str]:
    """Versions of the export tools already imported, for the manifest."""
    import sys

    return {name: sys.modules[name].__version__ for name in ("torch", "timm", "ultralytics", "onnxruntime", "onnx")
            if name in sys.modules}
