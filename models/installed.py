"""The models directory: ONNX files plus a manifest of their sha256, checked before every use.

Weights are large and come from several places (exports, stand-ins, downloads); the manifest
`deepfaune-models.json` says which file serves which model version and role, and its hashes make
a truncated download or a swapped file an error instead of silently different answers.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ..api import RunSettings
from ..untrusted import UntrustedInputError, load_json
from ..atomic import write_bytes_atomic
from ..errors import DeepfauneError
from .cards import version_key
from ..paths import is_plain_name

MANIFEST_NAME = "deepfaune-models.json"
MANIFEST_VERSION = 1
KINDS = ("detector", "classifier")
_CHUNK = 1 << 20
_RACY_SECONDS = 2.0

# (resolved path, size, mtime_ns) -> sha256: a file is hashed once per process unless it changes.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


#: Variants of the fp32 files: "" (the default), "int8" (--fast on the CPU), "fp16" (--fast on a GPU).
VARIANTS = ("", "int8", "fp16")

class ModelFileError(DeepfauneError):
    """A model file is missing, altered, or not registered in the models directory."""


def user_cache_dir() -> Path:
    """The platform's user cache directory + deepfaune-plugin (models, result stores)."""
    home = Path.home()
    if sys.platform.startswith("win"):
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else home / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = home / "Library" / "Caches"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"  # XDG: relative values are ignored
    return base / "deepfaune-plugin"


def default_models_dir() -> Path:
    """$DEEPFAUNE_MODELS, else the user cache directory of the platform + deepfaune-plugin/models."""
    env = os.environ.get("DEEPFAUNE_MODELS")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "models"


def sha256_file(path: Path) -> str:
    """Streamed sha256 of a file, cached by (path, size, mtime_ns).

    A file modified in the last couple of seconds is not cached: a second write within the same
    timestamp tick would otherwise go unnoticed (git's "racy" files).
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _HASH_CACHE.get(key)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        if time.time() - st.st_mtime > _RACY_SECONDS:
            _HASH_CACHE[key] = digest
    return digest


def _empty_manifest() -> dict[str, Any]:
    return {"manifest_version": MANIFEST_VERSION, "files": {}, "versions": {}, "created": None, "tools": {}}


class InstalledModels:
    """One models directory and its manifest; reads lazily, writes only on save()."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_models_dir()
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            path = self.manifest_path
            if not path.is_file():
                raise ModelFileError(
                    f"no models installed in {self.root}: run `deepfaune models stand-in {self.root}` "
                    f"or `deepfaune models install {RunSettings.model_version}`"
                )
            try:
                data = load_json(path)
            except UntrustedInputError as exc:
                raise ModelFileError(f"cannot read the models manifest: {exc}") from None
            if not isinstance(data, dict):
                raise ModelFileError(f"{path}: the models manifest must be a JSON object")
            if data.get("manifest_version") != MANIFEST_VERSION:
                raise ModelFileError(
                    f"{path}: manifest_version {data.get('manifest_version')!r} is not supported "
                    f"(expected {MANIFEST_VERSION})"
                )
            data.setdefault("files", {})
            data.setdefault("versions", {})
            for key in ("files", "versions"):  # a hand-edited manifest: say what is wrong, not a traceback later
                table = data[key]
                if not isinstance(table, dict):
                    raise ModelFileError(f"{path}: {key!r} must be a JSON object, not {type(table).__name__}")
                wrong = sorted(str(k) for k, v in table.items() if not isinstance(v, dict))
                if wrong:
                    raise ModelFileError(f"{path}: {key} {', '.join(map(repr, wrong))} must be JSON objects "
                                         f"(reinstall with `deepfaune models install` or fix the file)")
            _check_names(data, path)
            self._manifest = data
        return self._manifest

    def _manifest_or_new(self) -> dict[str, Any]:
        if self._manifest is None and not self.manifest_path.exists():
            self._manifest = _empty_manifest()
        return self.manifest

    # -- reading -------------------------------------------------------------------------
    def versions(self) -> list[str]:
        return sorted(self.manifest["versions"], key=version_key)

    def file_name(self, version: str, role: str, mode: str | None = None) -> str:
        """The registered file name for a role: "classifier" or "detector" (+ mode), each with a variant
        suffix "_int8" (--fast on the CPU) or "_fp16" (--fast on a GPU)."""
        versions = self.manifest["versions"]
        if version not in versions:
            have = ", ".join(self.versions()) or "none"
            raise ModelFileError(f"model version {version} is not installed in {self.root} (installed: {have})")
        entry = versions[version]
        kind, _, variant = role.partition("_")
        if kind not in ("classifier", "detector") or variant not in VARIANTS:
            raise ValueError(f"unknown role {role!r}; use classifier or detector, optionally with _int8 or _fp16")
        if kind == "detector":
            if mode is None:
                raise ValueError(f"role {role!r} needs a mode (e.g. 'DF' or 'MDS')")
            detectors = entry.get("detectors" + (f"_{variant}" if variant else ""), {})
            if mode not in detectors:
                what = "detector" if not variant else f"{variant} detector (deepfaune models quantize)"
                raise ModelFileError(
                    f"no {mode} {what} installed for model {version} in {self.root} "
                    f"(installed: {', '.join(detectors) or 'none'})"
                )
            return detectors[mode]
        if not entry.get(role):
            hint = " (deepfaune models quantize)" if variant else ""
            raise ModelFileError(f"no {role} installed for model {version} in {self.root}{hint}")
        return entry[role]

    def file_info(self, name: str) -> dict[str, Any]:
        files = self.manifest["files"]
        if name not in files:
            raise ModelFileError(f"{name} is not registered in {self.manifest_path}")
        return dict(files[name])

    def is_standin(self, version: str) -> bool:
        """True when any file of this version is a stand-in (random weights): its labels mean nothing."""
        entry = self.manifest["versions"].get(version, {})
        names = _referenced(entry)
        return any(self.manifest["files"].get(n, {}).get("standin") for n in names if n)

    def file_for(self, version: str, role: str, mode: str | None = None) -> Path:
        """The path of the verified file serving a role (see `file_name` and `verified_path`)."""
        return self.verified_path(self.file_name(version, role, mode))

    def verified_path(self, name: str) -> Path:
        """The path of a registered file whose size and sha256 match the manifest, else ModelFileError."""
        problem = self._check(name)
        if problem:
            raise ModelFileError(problem)
        return self.root / name

    def verify(self) -> list[str]:
        """Every problem found: missing or altered files, versions pointing at unregistered files."""
        problems = [p for name in sorted(self.manifest["files"]) if (p := self._check(name))]
        for version, entry in sorted(self.manifest["versions"].items()):
            refs = _referenced(entry)
            for ref in refs:
                if ref and ref not in self.manifest["files"]:
                    problems.append(f"model {version} refers to {ref}, which the manifest does not list")
        return problems

    def _check(self, name: str) -> str | None:
        info = self.file_info(name)
        path = self.root / name
        if not path.is_file():
            return f"model file {path} is missing"
        size = path.stat().st_size
        if info.get("bytes") is not None and size != info["bytes"]:
            return f"model file {path} has {size} bytes, the manifest expects {info['bytes']} (truncated or replaced?)"
        actual = sha256_file(path)
        if actual != info["sha256"]:
            return f"model file {path} does not match the manifest: expected sha256 {info['sha256']}, actual {actual}"
        return None

    # -- writing -------------------------------------------------------------------------
    def add_file(self, path: Path | str, kind: str, **meta: Any) -> str:
        """Register a file (copied into the directory when it lies elsewhere); returns its name."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        src = Path(path)
        if not src.is_file():
            raise ModelFileError(f"cannot register {src}: no such file")
        self.root.mkdir(parents=True, exist_ok=True)
        dest = self.root / src.name
        if src.resolve() != dest.resolve():
            shutil.copyfile(src, dest)
        standin = bool(meta.pop("standin", False))
        entry = {
            "sha256": sha256_file(dest),
            "bytes": dest.stat().st_size,
            "kind": kind,
            "standin": standin,
            "source": meta.pop("source", "standin" if standin else "export"),
            **meta,
        }
        self._manifest_or_new()["files"][dest.name] = entry
        return dest.name

    def set_version(self, version: str, classifier: str, detectors: Mapping[str, str],
                    classifier_int8: str | None = None) -> None:
        """Say which registered files serve a model version."""
        files = self._manifest_or_new()["files"]
        for name in [classifier, classifier_int8, *detectors.values()]:
            if name is not None and name not in files:
                raise ModelFileError(f"{name} is not registered: add_file() it first")
        entry: dict[str, Any] = {"classifier": classifier, "detectors": dict(detectors)}
        if classifier_int8 is not None:
            entry["classifier_int8"] = classifier_int8
        self.manifest["versions"][version] = entry

    def set_int8(self, version: str, classifier_int8: str | None = None,
                 detectors_int8: Mapping[str, str] | None = None) -> None:
        """Add int8 variants (`--fast` on the CPU) to an installed version; the fp32 files stay its defaults."""
        self.set_variant(version, "int8", classifier_int8, detectors_int8)

    def set_variant(self, version: str, variant: str, classifier: str | None = None,
                    detectors: Mapping[str, str] | None = None) -> None:
        """Add `variant` ("int8", "fp16") files to an installed version; the fp32 files stay its defaults."""
        if variant not in VARIANTS or not variant:
            raise ValueError(f"unknown model variant {variant!r}; use one of {', '.join(v for v in VARIANTS if v)}")
        files = self.manifest["files"]
        entry = self.manifest["versions"].get(version)
        if entry is None:
            raise ModelFileError(f"model version {version} is not installed in {self.root}")
        for name in [classifier, *(detectors or {}).values()]:
            if name is not None and name not in files:
                raise ModelFileError(f"{name} is not registered: add_file() it first")
        if classifier is not None:
            entry[f"classifier_{variant}"] = classifier
        if detectors:
            entry[f"detectors_{variant}"] = {**entry.get(f"detectors_{variant}", {}), **detectors}

    def save(self) -> Path:
        """Write the manifest atomically (temp file in the same directory, then os.replace)."""
        data = self._manifest_or_new()
        data["created"] = data.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds")
        data["tools"] = {**data.get("tools", {}), **_tool_versions()}
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        write_bytes_atomic(self.manifest_path, text.encode("utf-8"))
        return self.manifest_path


def _referenced(entry: Mapping[str, Any]) -> list[str | None]:
    """The file names a version entry points at (fp32 and its int8 and fp16 variants)."""
    names: list[str | None] = []
    for variant in VARIANTS:
        suffix = f"_{variant}" if variant else ""
        names += [entry.get("classifier" + suffix), *entry.get("detectors" + suffix, {}).values()]
    return names


def _check_names(data: Mapping[str, Any], path: Path) -> None:
    """Every file the manifest names must be a plain name inside the models directory (no ../, no /abs)."""
    names = list(data["files"])
    for entry in data["versions"].values():
        names += _referenced(entry)
    for name in names:
        if name is not None and not is_plain_name(name):
            raise ModelFileError(f"{path}: file name {name!r} refused: model files must be plain names "
                                 "inside the models directory")


def _tool_versions() -> dict[str, str]:
    from .._version import __version__

    tools = {"deepfaune-plugin": __version__, "python": platform.python_version()}
    for module in ("onnx", "onnxruntime", "numpy"):
        try:
            tools[module] = __import__(module).__version__
        except ImportError:
            pass
    return tools
