from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(TESTS))
# tests/ mirrors the package (hooks/<host>/, engine/, models/, report/); helpers and the fixtures tests share
# by import are found from any of those folders, whatever order pytest collects them in.
for _folder in sorted(p for p in TESTS.rglob("*") if p.is_dir() and p.name != "__pycache__"):
    sys.path.insert(1, str(_folder))
# Test what users get: the installed package (`python -m pytest` would otherwise put the source tree first,
# where hooks/ and models/ are not yet mapped to deepfaune_plugin.hooks and deepfaune_plugin.models).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO]


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared (reference data beside the repo); tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present beside the repository")
    return SHARED


@pytest.fixture(scope="session")
def standin_models(tmp_path_factory) -> Path:
    """Small stand-in models of DeepFaune 1.4 (the exact ONNX contract, random weights), built once."""
    from deepfaune_plugin.models.standins import write_standins

    root = tmp_path_factory.mktemp("models")
    write_standins(root, "1.4", seed=0)
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Result stores and default model folders go to a temporary cache, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DEEPFAUNE_MODELS", raising=False)
