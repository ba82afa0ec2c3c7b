"""Exporting DeepFaune's official PyTorch weights to the ONNX contract (optional `export` extra).

Nothing here is imported by the runtime; torch, timm and ultralytics are imported on first use
and their absence is reported as "pip install 'deepfaune-plugin[export]'".

Modules: deps (optional imports), checkpoint (torchvision-free reading), classifier and detector
(export + parity), quantize (int8 variant), probes (made-up inputs), parity (the comparisons),
install (download, export, manifest); the random checkpoints in the official formats that tests use are
tests/models/official_checkpoints.py.
"""
from .deps import INSTALL_HINT, ExportDepsMissing, require

__all__ = ["INSTALL_HINT", "ExportDepsMissing", "require"]
