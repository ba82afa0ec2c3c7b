"""Everything about model files, in one package: the cards (one YAML per DeepFaune version, `cards`), the
installed models folder and its manifest (`installed`), downloads (`download`), stand-in models (`standins`),
`deepfaune models` (`cli`) and the optional PyTorch export (`export`). The ONNX contract is README.md.

Installed as `deepfaune_plugin.models`. Weights never live here: they go to a models folder
(`installed.default_models_dir()`). "Store" in this project means only the result store (deepfaune_plugin.store).
"""
from pathlib import Path

CARDS_DIR = Path(__file__).resolve().parent
