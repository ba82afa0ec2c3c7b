"""The version has one source of truth: plugin.yaml at the project root.

At build time (source tree present) it is read from plugin.yaml; once installed, from the
package metadata that the build wrote from it.  No YAML parser is needed at build time.
"""
from __future__ import annotations

import re
from pathlib import Path


def _read() -> str:
    manifest = Path(__file__).resolve().parent.parent / "plugin.yaml"
    if manifest.is_file():
        match = re.search(r"^version:\s*['\"]?([^'\"\s#]+)", manifest.read_text(encoding="utf-8"), re.M)
        if match:
            return match.group(1)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deepfaune-plugin")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _read()
