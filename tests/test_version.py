"""One version, from plugin.yaml, everywhere."""
from importlib.metadata import version
from pathlib import Path

import yaml

import deepfaune_plugin

REPO = Path(__file__).resolve().parents[1]


def test_version_single_source():
    manifest = yaml.safe_load((REPO / "plugin.yaml").read_text(encoding="utf-8"))
    assert deepfaune_plugin.__version__ == manifest["version"] == version("deepfaune-plugin")


def test_plugin_manifest_declares_licences_citations_backends_hosts():
    manifest = yaml.safe_load((REPO / "plugin.yaml").read_text(encoding="utf-8"))
    assert manifest["licences"]["weights"]["1.4"] == "CC-BY-SA-4.0"
    assert {c["doi"] for c in manifest["citations"]} == {"10.1007/s10344-023-01742-7", "10.1002/rse2.412"}
    assert "deepfaune" in {b["name"] for b in manifest["backends"]}
    from deepfaune_plugin.plugins import build_registry, new_plugin_manager

    registry = build_registry(new_plugin_manager())
    # plugin.yaml lists this distribution's hosts: other installed plugins (the Wildlife Insights one in CI) add theirs
    ours = {name for name, reg in registry.hosts.items() if reg.origin.startswith("deepfaune-plugin ")}
    assert {h["name"] for h in manifest["hosts"]} == ours
