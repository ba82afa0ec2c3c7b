"""DeepFaune model cards (one YAML file per DeepFaune version) and the ONNX contract (README.md).

Installed as `deepfaune_plugin.models`; the cards are package data read by
`deepfaune_plugin.modelcards`.  Weights never live here: they go to a models directory
(see `deepfaune_plugin.modelstore`).
"""
from pathlib import Path

CARDS_DIR = Path(__file__).resolve().parent
