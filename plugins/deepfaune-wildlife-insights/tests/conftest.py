from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # wi_fixtures
# the source tree last: an installed copy (what CI tests) wins, an uninstalled checkout still runs its tests
sys.path.append(str(Path(__file__).resolve().parents[1]))


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Result stores and default model folders go to a temporary cache, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DEEPFAUNE_MODELS", raising=False)


@pytest.fixture(scope="session")
def standin_models(tmp_path_factory) -> Path:
    """DeepFaune 1.4's stand-in models (random weights, the exact ONNX contract), made by the public command."""
    from deepfaune_plugin.testing import run_cli

    root = tmp_path_factory.mktemp("models")
    result = run_cli(["models", "stand-in", root])
    assert result.code == 0, result.stderr
    return root
