"""DeepFaune on ONNX Runtime as a classification backend for camera-trap data managers."""
from pathlib import Path as _Path

from ._version import __version__

# The build maps the top-level hooks/ and models/ folders to deepfaune_plugin.hooks and
# deepfaune_plugin.models.  Run straight from a source checkout (python -c, python -m from the
# repository), this package's folder lacks them: look for them beside it, as the build would.
_here = _Path(__file__).resolve().parent
if not (_here / "hooks").is_dir() and (_here.parent / "hooks" / "__init__.py").is_file() \
        and (_here.parent / "pyproject.toml").is_file():
    __path__.append(str(_here.parent))  # noqa: F821 (a package's __path__)

__all__ = ["__version__"]
