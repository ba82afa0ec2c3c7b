from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

from deepfaune_plugin.models import installed as modelstore
from deepfaune_plugin.models.installed import MANIFEST_NAME, ModelFileError, InstalledModels, default_models_dir


def _age(path: Path, seconds: float = 60.0) -> None:
    """Make a file look old enough for the hash cache (fresh files are never cached)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


@pytest.fixture()
def store(tmp_path) -> InstalledModels:
    root = tmp_path / "models"
    root.mkdir()
    (root / "cls.onnx").write_bytes(b"classifier-bytes" * 100)
    (root / "df.onnx").write_bytes(b"detector-df")
    (root / "mds.onnx").write_bytes(b"detector-mds")
    s = InstalledModels(root)
    s.add_file(root / "cls.onnx", "classifier", standin=True, seed=3)
    s.add_file(root / "df.onnx", "detector", detector="DF")
    s.add_file(root / "mds.onnx", "detector", detector="MDS", source="download")
    s.set_version("1.4", classifier="cls.onnx", detectors={"DF": "df.onnx", "MDS": "mds.onnx"})
    s.save()
    return InstalledModels(root)  # a fresh reader


def test_manifest_content(store):
    data = json.loads(store.manifest_path.read_text(encoding="utf-8"))
    assert data["manifest_version"] == 1
    cls = data["files"]["cls.onnx"]
    assert cls == {"sha256": hashlib.sha256(b"classifier-bytes" * 100).hexdigest(), "bytes": 1600,
                   "kind": "classifier", "standin": True, "source": "standin", "seed": 3}
    assert data["files"]["df.onnx"]["source"] == "export" and data["files"]["df.onnx"]["standin"] is False
    assert data["files"]["mds.onnx"]["source"] == "download"
    assert data["versions"] == {"1.4": {"classifier": "cls.onnx", "detectors": {"DF": "df.onnx", "MDS": "mds.onnx"}}}
    assert data["created"].endswith("+00:00")
    assert data["tools"]["deepfaune-plugin"] and data["tools"]["onnx"]


def test_verified_paths(store):
    assert store.versions() == ["1.4"]
    assert store.verify() == []
    assert store.file_for("1.4", "classifier") == store.root / "cls.onnx"
    assert store.file_for("1.4", "detector", "MDS") == store.root / "mds.onnx"


def test_verified_path_checks_a_file_by_its_name(store):
    assert store.verified_path("df.onnx") == store.root / "df.onnx"
    (store.root / "df.onnx").write_bytes(b"detector-dG")  # same size, one byte changed
    with pytest.raises(ModelFileError, match=r"df\.onnx does not match the manifest"):
        store.verified_path("df.onnx")
    (store.root / "stray.onnx").write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"stray\.onnx is not registered"):
        store.verified_path("stray.onnx")


def test_flipped_byte_names_the_file_and_both_hashes(store):
    path = store.root / "df.onnx"
    expected = hashlib.sha256(b"detector-df").hexdigest()
    store.file_for("1.4", "detector", "DF")
    path.write_bytes(b"detector-dG")  # same size, one byte changed
    actual = hashlib.sha256(b"detector-dG").hexdigest()
    with pytest.raises(ModelFileError) as err:
        store.file_for("1.4", "detector", "DF")
    message = str(err.value)
    assert str(path) in message and expected in message and actual in message
    assert store.verify() == [message]


def test_missing_and_truncated_files(store):
    (store.root / "mds.onnx").unlink()
    (store.root / "cls.onnx").write_bytes(b"classifier-bytes")
    with pytest.raises(ModelFileError, match=r"mds\.onnx is missing"):
        store.file_for("1.4", "detector", "MDS")
    problems = store.verify()
    assert len(problems) == 2
    assert "cls.onnx has 16 bytes, the manifest expects 1600" in problems[0]
    assert "mds.onnx is missing" in problems[1]


def test_missing_manifest_says_what_to_run(tmp_path):
    s = InstalledModels(tmp_path)
    expected = (f"no models installed in {tmp_path}: run `deepfaune models stand-in {tmp_path}` "
                f"or `deepfaune models install 1.4`")
    with pytest.raises(ModelFileError) as err:
        s.versions()
    assert str(err.value) == expected


def test_unknown_version_role_and_mode(store):
    with pytest.raises(ModelFileError, match=r"model version 1\.5 is not installed .* \(installed: 1\.4\)"):
        store.file_for("1.5", "classifier")
    with pytest.raises(ModelFileError, match=r"no MDR detector installed for model 1\.4 .* \(installed: DF, MDS\)"):
        store.file_for("1.4", "detector", "MDR")
    with pytest.raises(ModelFileError, match="no classifier_int8 installed"):
        store.file_for("1.4", "classifier_int8")
    with pytest.raises(ValueError, match="needs a mode"):
        store.file_for("1.4", "detector")
    with pytest.raises(ValueError, match="unknown role"):
        store.file_for("1.4", "bird_head")


def test_verify_reports_versions_pointing_nowhere(store):
    data = json.loads(store.manifest_path.read_text(encoding="utf-8"))
    data["versions"]["1.5"] = {"classifier": "gone.onnx", "detectors": {"DF": "df.onnx"}}
    store.manifest_path.write_text(json.dumps(data), encoding="utf-8")
    assert InstalledModels(store.root).verify() == ["model 1.5 refers to gone.onnx, which the manifest does not list"]


def test_set_version_refuses_unregistered_files(store):
    with pytest.raises(ModelFileError, match="other.onnx is not registered"):
        store.set_version("1.5", classifier="other.onnx", detectors={})


def test_a_file_is_hashed_once_per_process(store, monkeypatch):
    calls = []
    real = hashlib.sha256

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(modelstore, "_HASH_CACHE", {})
    monkeypatch.setattr(modelstore.hashlib, "sha256", counting)
    path = store.root / "cls.onnx"
    _age(path)
    for _ in range(3):
        store.file_for("1.4", "classifier")
    assert len(calls) == 1
    path.write_bytes(b"x" * 1600)  # changed: new mtime -> hashed again, and refused
    with pytest.raises(ModelFileError):
        store.file_for("1.4", "classifier")
    assert len(calls) == 2


def test_add_file_copies_from_elsewhere(tmp_path):
    outside = tmp_path / "export" / "model.onnx"
    outside.parent.mkdir()
    outside.write_bytes(b"abc")
    s = InstalledModels(tmp_path / "models")
    assert s.add_file(outside, "classifier") == "model.onnx"
    assert (tmp_path / "models" / "model.onnx").read_bytes() == b"abc"
    with pytest.raises(ValueError, match="kind must be one of detector, classifier"):
        s.add_file(outside, "weights")


def test_save_is_atomic_and_leaves_no_temp_files(store):
    before = store.manifest_path.read_bytes()
    store.add_file(store.root / "df.onnx", "detector", bad=object())  # not JSON-serialisable
    with pytest.raises(TypeError):
        store.save()
    assert store.manifest_path.read_bytes() == before  # the old manifest survives a failed write
    assert sorted(p.name for p in store.root.iterdir()) == ["cls.onnx", MANIFEST_NAME, "df.onnx", "mds.onnx"]
    if os.name == "posix":
        assert store.manifest_path.stat().st_mode & 0o044 == 0o044  # readable like the models, not mkstemp's 0600


def test_default_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPFAUNE_MODELS", str(tmp_path / "mine"))
    assert default_models_dir() == tmp_path / "mine"
    monkeypatch.delenv("DEEPFAUNE_MODELS")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_models_dir() == tmp_path / "xdg" / "deepfaune-plugin" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_models_dir() == tmp_path / ".cache" / "deepfaune-plugin" / "models"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_models_dir() == tmp_path / "Library" / "Caches" / "deepfaune-plugin" / "models"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert default_models_dir() == tmp_path / "Local" / "deepfaune-plugin" / "models"
