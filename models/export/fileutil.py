"""Small file helpers shared by the exporters."""
from __future__ import annotations

import os
from pathlib import Path


def make_readable(path: Path) -> Path:
    """Give a file written through a private temporary file the usual umask mode (mkstemp makes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    return path
