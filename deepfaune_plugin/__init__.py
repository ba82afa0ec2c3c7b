"""DeepFaune on ONNX Runtime as a classification backend for camera-trap data managers."""
from ._version import __version__

__all__ = ["__version__"]
