"""`deepfaune models install`: official files -> ONNX exports -> models directory + manifest.

The official PyTorch files are fetched (or taken from `--from DIR`) into a download folder beside
the models directory, never inside it. Exports are written in a staging folder inside the models
directory and moved into place only when every file passed its parity check; the manifest is
saved last, so an interrupted install leaves the previous state, not a half-written one.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from deepfaune_plugin.models.download import DownloadError, download, note_path
from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.models.cards import ModelCard, load_card
from deepfaune_plugin.models.installed import InstalledModels, sha256_file

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class OfficialFile:
    role: str  # "classifier", "bird_head", "detector:DF", "detector:MDS"
    name: str
    urls: tuple[str, ...]  # tried in order
    size: int | None


def official_files(card: ModelCard, base_url: str | None = None) -> list[OfficialFile]:
    """The PyTorch files a version needs, with where they come from (`base_url` replaces every origin)."""
    def urls(name: str, *candidates: str | None) -> tuple[str, ...]:
        if base_url:
            return (f"{base_url.rstrip('/')}/{name}",)
        return tuple(u for u in candidates if u)

    c = card.classifier
    files = [OfficialFile("classifier", c.file, urls(c.file, c.url), c.size_bytes)]
    if card.bird_head is not None:
        files.append(OfficialFile("bird_head", card.bird_head.file, urls(card.bird_head.file, card.bird_head.url), None))
    for name, d in card.detectors.items():
        files.append(OfficialFile(f"detector:{name}", d.file, urls(d.file, d.url, d.mirror_url), None))
    return files


def default_download_dir(models_dir: Path) -> Path:
    """A sibling of the models directory (same disk, so nothing large crosses filesystems)."""
    env = os.environ.get("DEEPFAUNE_DOWNLOADS")
    return Path(env).expanduser() if env else models_dir.parent / f"{models_dir.name}-downloads"


def fetch(card: ModelCard, download_dir: Path, *, source_dir: Path | None = None, base_url: str | None = None,
          progress: bool = True, log: Log = _stderr) -> dict[str, Path]:
    """The official files of a version on local disk: found in `source_dir`, or downloaded."""
    wanted = official_files(card, base_url)
    found: dict[str, Path] = {}
    if source_dir is not None:
        named = {f.role: Path(source_dir) / f.name for f in wanted if (Path(source_dir) / f.name).is_file()}
        named.update(_found_by_content(card, Path(source_dir), [f for f in wanted if f.role not in named],
                                       set(named.values()), log))
        missing = [f.name for f in wanted if f.role not in named]
        if missing:
            raise DeepfauneError(f"{source_dir} lacks {', '.join(missing)} (DeepFaune {card.version} needs "
                                 f"{', '.join(f.name for f in wanted)}; a file under another name is taken when "
                                 "its content is the one the card describes)")
        for f in wanted:
            path = named[f.role]
            if f.size is not None and path.stat().st_size != f.size:
                raise DeepfauneError(f"{path} has {path.stat().st_size} bytes, the model card expects {f.size}: "
                                     f"a different or damaged file")
            found[f.role] = path
        return found
    for f in wanted:
        errors = []
        for url in f.urls:
            log(f"downloading {f.name} from {url}")
            try:
                found[f.role] = download(url, download_dir / f.name, expected_size=f.size, progress=progress)
                break
            except DownloadError as err:
                errors.append(str(err))
        else:
            raise DownloadError("; ".join(errors) or f"no address known for {f.name}")
    return found


MAX_CANDIDATES = 64  # .pt files looked into for the official files not found under their names


def _role_of(card: ModelCard, kind: str, detail: str | None) -> list[str]:
    """The roles of `card` a file of that content can fill."""
    from deepfaune_plugin.models.convert.formats import detector_family

    if kind == "classifier" and detail == card.classifier.backbone:
        return ["classifier"]
    if kind == "bird_head" and card.bird_head is not None:
        return ["bird_head"]
    if kind == "detector" and detail is not None:
        return [f"detector:{name}" for name, d in card.detectors.items() if detector_family(d.architecture) == detail]
    return []


def _found_by_content(card: ModelCard, folder: Path, missing: list[OfficialFile], claimed: set[Path],
                      log: Log) -> dict[str, Path]:
    """The official files not under their names, recognised by what they hold (DeepFaune's README saves
    MegaDetector as md_v1000.0.0.pt): each other .pt file's pickle is read (not its tensors) and a file that
    is the only one of a role's kind fills it."""
    if not missing:
        return {}
    from deepfaune_plugin.models.convert.formats import CheckpointError, describe
    from deepfaune_plugin.models.convert.torchfree_pickle import peek

    candidates: dict[str, list[Path]] = {}
    others = sorted(p for p in folder.glob("*.pt") if p.is_file() and p not in claimed)[:MAX_CANDIDATES]
    for path in others:
        try:
            kind, detail = describe(peek(path))
        except CheckpointError:
            continue  # not a checkpoint we read: not an official file either
        for role in _role_of(card, kind, detail):
            candidates.setdefault(role, []).append(path)
    found: dict[str, Path] = {}
    for f in missing:
        paths = [p for p in candidates.get(f.role, []) if p not in found.values()]
        if len(paths) > 1:
            raise DeepfauneError(f"{folder} lacks {f.name}, and {', '.join(p.name for p in paths)} all hold what it "
                                 f"holds: rename the right one {f.name}")
        if paths:
            log(f"{f.name}: taking {paths[0]} (its content is the card's {f.role})")
            found[f.role] = paths[0]
    return found


def _file_facts(path: Path, url: str | None) -> dict[str, Any]:
    out = {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if url:
        out["url"] = url
    return out


def int8_name(onnx_name: str) -> str:
    stem = onnx_name[:-5] if onnx_name.endswith(".onnx") else onnx_name
    return f"{stem}-int8.onnx"


CONVERTERS = ("torchfree", "torch")


def export_version(card: ModelCard, files: Mapping[str, Path], models_dir: Path, *, int8: bool = True,
                   probe_dir: Path | None = None, backbone_kwargs: Mapping[str, Any] | None = None,
                   converter: str = "torchfree", log: Log = _stderr) -> Path:
    """Convert every file of a version, check it, move them into `models_dir`, save the manifest.

    `converter` "torchfree" writes the graphs from the checkpoints' arrays (models/convert: numpy and onnx
    only), and measures parity against torch too when torch, timm and ultralytics happen to be installed;
    "torch" is the torch/ultralytics export, always with its parity check."""
    from .probes import probe_crops, probe_images
    from .quantize import int8_classifier

    if converter not in CONVERTERS:
        raise DeepfauneError(f"unknown converter {converter!r}; choose {' or '.join(CONVERTERS)}")
    steps = _TorchFree(backbone_kwargs) if converter == "torchfree" else _TorchExport(backbone_kwargs)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    installed = InstalledModels(models_dir)
    if installed.manifest_path.exists():
        installed.manifest  # a damaged manifest fails now, before an hour of exporting
    origins = {f.role: f.urls[0] if f.urls else None for f in official_files(card)}
    tools = steps.tools()
    images = probe_images(directory=probe_dir)
    c = card.classifier
    crops = probe_crops(c.crop_size, images=images)
    entries: list[tuple[str, str, dict[str, Any]]] = []  # (file name, kind, metadata)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=models_dir) as staging:
        stage = Path(staging)
        log(f"{steps.verb} the {c.backbone} classifier ({c.file}) at {c.crop_size} px")
        meta = steps.classifier(card, files, stage / c.onnx, crops, log)
        sources = {"exported_from": _file_facts(files["classifier"], origins.get("classifier"))}
        if "bird_head" in files:
            sources["bird_head_from"] = _file_facts(files["bird_head"], origins.get("bird_head"))
        entries.append((c.onnx, "classifier", {**sources, **meta}))
        int8_file = None
        if int8:
            int8_file = int8_name(c.onnx)
            entries.append((int8_file, "classifier",
                            int8_classifier(stage / c.onnx, stage / int8_file, crops, c.crop_size, log)))
        detectors = {}
        for name, spec in card.detectors.items():
            log(f"{steps.verb} the {name} detector ({spec.file}) at {spec.size} px")
            meta = steps.detector(files[f"detector:{name}"], stage / spec.onnx, spec, images, log)
            entries.append((spec.onnx, "detector", {"detector": name, "conf": spec.conf,
                                                    "exported_from": _file_facts(files[f"detector:{name}"],
                                                                                 origins.get(f"detector:{name}")),
                                                    **meta}))
            detectors[name] = spec.onnx
        for name, _kind, _meta in entries:
            os.replace(stage / name, models_dir / name)
    for name, kind, meta in entries:
        meta.setdefault("source", "export")
        installed.add_file(models_dir / name, kind, version=card.version, tools=tools, **meta)
    installed.set_version(card.version, classifier=c.onnx, detectors=detectors, classifier_int8=int8_file)
    return installed.save()


def _log_classifier_parity(p, seconds: float, log: Log, against: str = "PyTorch") -> None:
    log(f"  parity against {against}: max |delta logit| {p.max_abs_logit:.2e}"
        + (f", bird {p.max_abs_bird_logit:.2e}" if p.max_abs_bird_logit is not None else "")
        + f" on {p.probes} probe crops ({seconds:.0f} s)")


def _log_detector_parity(q, seconds: float, log: Log, against: str = "PyTorch") -> None:
    log(f"  parity against {against}: {q.boxes} boxes on {q.images} probe images, min IoU {q.min_iou:.6f}, "
        f"max |delta score| {q.max_abs_raw_score:.2e} ({seconds:.0f} s)")


class _TorchExport:
    """torch.onnx / ultralytics' exporter, each file refused on a parity failure (the export extra)."""

    verb = "exporting"

    def __init__(self, backbone_kwargs: Mapping[str, Any] | None):
        self.backbone_kwargs = backbone_kwargs

    def tools(self) -> dict[str, str]:
        from .deps import tool_versions

        return {**tool_versions(), "converter": "torch"}

    def classifier(self, card: ModelCard, files: Mapping[str, Path], out: Path, crops, log: Log) -> dict[str, Any]:
        from .classifier import export_classifier

        c = card.classifier
        cls = export_classifier(files["classifier"], out, bird_head=files.get("bird_head"), crop_size=c.crop_size,
                                global_pool=c.global_pool, expect_backbone=c.backbone, expect_classes=c.num_classes,
                                backbone_kwargs=self.backbone_kwargs, probes=crops)
        _log_classifier_parity(cls.parity, cls.seconds, log)
        return {"converter": "torch", **cls.metadata()}

    def detector(self, pt: Path, out: Path, spec, images, log: Log) -> dict[str, Any]:
        from .detector import export_detector

        det = export_detector(pt, out, size=spec.size, card_conf=spec.conf, images=images)
        _log_detector_parity(det.parity, det.seconds, log)
        return {"converter": "torch", **det.metadata()}


@contextlib.contextmanager
def _unfit(path: Path, architecture: str):
    """Arrays from a file that build no working graph (a shape that does not fit, a graph onnxruntime refuses)
    become a message naming the official file (not the staged ONNX), not a traceback; the file's own
    checks (CheckpointError) already say the clear cases."""
    from deepfaune_plugin.models.convert.formats import CheckpointError

    try:
        yield
    except CheckpointError:
        raise
    except Exception as err:
        raise DeepfauneError(f"{path}: its weights do not form DeepFaune's {architecture} "
                             f"({type(err).__name__}: {err})") from err


class _TorchFree:
    """models/convert: the graphs written from the checkpoints' arrays; parity measured when torch is there."""

    verb = "converting (torch-free)"

    def __init__(self, backbone_kwargs: Mapping[str, Any] | None):
        self.backbone_kwargs = backbone_kwargs
        from .deps import ExportDepsMissing, require, require_ultralytics

        try:
            require("torch"), require("timm"), require_ultralytics()
            self.reference = True
        except ExportDepsMissing:
            self.reference = False

    def tools(self) -> dict[str, str]:
        import onnx
        import onnxruntime

        from deepfaune_plugin import __version__

        return {"converter": "torchfree", "deepfaune-plugin": __version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__}

    def classifier(self, card: ModelCard, files: Mapping[str, Path], out: Path, crops, log: Log) -> dict[str, Any]:
        import time

        from deepfaune_plugin.engine.onnx_models import OnnxClassifier
        from deepfaune_plugin.models.convert.read import read_bird_head, read_classifier
        from deepfaune_plugin.models.convert.torchfree_pickle import MAX_CHECKPOINT_BYTES, memory_bound
        from deepfaune_plugin.models.convert.vit import build_classifier, position_note

        start = time.monotonic()
        c = card.classifier
        ckpt = read_classifier(files["classifier"], memory_bound(c.weight_bytes()))
        if ckpt.backbone != c.backbone:
            raise DeepfauneError(f"{files['classifier']} holds a {ckpt.backbone} classifier, the model card "
                                 f"expects {c.backbone}")
        if ckpt.num_classes != c.num_classes:
            raise DeepfauneError(f"{files['classifier']} has {ckpt.num_classes} classes, the model card expects "
                                 f"{c.num_classes}")
        bird = None
        if "bird_head" in files:  # fetched only for a card that has one
            need = card.bird_head.weight_bytes(c.architecture.embed_dim) if card.bird_head else None
            bird = read_bird_head(files["bird_head"], MAX_CHECKPOINT_BYTES if need is None else memory_bound(need))
        with _unfit(files["classifier"], c.backbone):
            model = build_classifier(ckpt.state_dict, bird, c.crop_size, where=str(files["classifier"]))
            note = position_note(ckpt.state_dict, c.crop_size)
            del ckpt
            out.write_bytes(model.SerializeToString())
            del model
            got = OnnxClassifier(out, size=c.crop_size).classify(crops)  # the contract, and finite answers
            logits, bird_logits = got.logits, got.bird_logits
        meta: dict[str, Any] = {"converter": "torchfree", "backbone": c.backbone, "num_classes": c.num_classes,
                                "crop_size": c.crop_size, "position_table": note,
                                "bird_classes": None if bird_logits is None else int(bird_logits.shape[1]),
                                "features": None if got.features is None else int(got.features.shape[1])}
        if self.reference:
            from .classifier import build_reference
            from .checkpoint import load_bird_head, load_classifier_checkpoint
            from .parity import ParityError, classifier_parity

            ref, _ = build_reference(load_classifier_checkpoint(files["classifier"]),
                                     load_bird_head(files["bird_head"]) if "bird_head" in files else None,
                                     c.global_pool, self.backbone_kwargs)
            ref_logits, ref_bird, ref_features = ref.run(crops)
            parity = classifier_parity(ref_logits, logits, ref_bird, bird_logits, None, ref_features, got.features)
            _log_classifier_parity(parity, time.monotonic() - start, log, "timm (torch is installed)")
            if not parity.ok:
                raise ParityError(f"the torch-free {c.backbone} graph does not match timm: {parity.as_dict()}")
            meta["parity"] = {**parity.as_dict(), "against": "timm"}
            meta["parity"].pop("max_abs_logit_baked")  # a torch-export figure: no static torch model here
        else:
            meta["parity"] = {"measured": False, "why": "torch is not installed; the converter's parity with timm "
                                                        "is measured in CI (docs/models.md)"}
            log(f"  written from the checkpoint's arrays ({time.monotonic() - start:.0f} s); torch is not "
                "installed, so parity was not measured here (see docs/models.md)")
        return meta

    def detector(self, pt: Path, out: Path, spec, images, log: Log) -> dict[str, Any]:
        import time

        from deepfaune_plugin.engine.onnx_models import OnnxDetector
        from deepfaune_plugin.models.convert.torchfree_pickle import MAX_CHECKPOINT_BYTES, memory_bound
        from deepfaune_plugin.models.convert.yolo import convert_detector

        start = time.monotonic()
        need = spec.weight_bytes()
        # an ultralytics file may hold the model, its EMA and the optimiser's two moments: four copies
        limit = MAX_CHECKPOINT_BYTES if need is None else memory_bound(need, copies=4)
        with _unfit(pt, spec.architecture):
            convert_detector(pt, out, limit)
            OnnxDetector(out, size=spec.size)  # the contract
        meta: dict[str, Any] = {"converter": "torchfree", "architecture": spec.architecture, "size": spec.size}
        if self.reference:
            from .detector import PARITY_CONF, load_reference, measure_parity
            from .parity import ParityError

            reference = load_reference(pt)
            checks = [measure_parity(reference, out, images, spec.size, conf)
                      for conf in dict.fromkeys((PARITY_CONF, spec.conf))]
            for q in checks:
                _log_detector_parity(q, time.monotonic() - start, log, "ultralytics (torch is installed)")
                if not q.ok:
                    raise ParityError(f"the torch-free {pt.name} graph does not match ultralytics: {q.as_dict()}")
            meta["parity"] = {**checks[0].as_dict(), "against": "ultralytics"}
            if len(checks) > 1:
                meta["parity_at_card_conf"] = checks[1].as_dict()
        else:
            meta["parity"] = {"measured": False, "why": "torch is not installed; the converter's parity with "
                                                        "ultralytics is measured in CI (docs/models.md)"}
            log(f"  written from the checkpoint's arrays ({time.monotonic() - start:.0f} s)")
        return meta


def install(version: str, models_dir: Path, *, source_dir: Path | None = None, download_dir: Path | None = None,
            base_url: str | None = None, card: ModelCard | None = None, int8: bool = True,
            keep_downloads: bool = False, probe_dir: Path | None = None, progress: bool = True,
            backbone_kwargs: Mapping[str, Any] | None = None, converter: str = "torchfree",
            log: Log = _stderr) -> Path:
    """Fetch (or take from `source_dir`) a version's official files, convert them, write the manifest."""
    card = card or load_card(version)
    if converter == "torch":
        from .deps import require, require_ultralytics

        require("torch")
        require("timm")
        require_ultralytics()  # fail before a 1.2 GB download, not after

    models_dir = Path(models_dir)
    download_dir = Path(download_dir) if download_dir else default_download_dir(models_dir)
    files = fetch(card, download_dir, source_dir=source_dir, base_url=base_url, progress=progress, log=log)
    manifest = export_version(card, files, models_dir, int8=int8, probe_dir=probe_dir,
                              backbone_kwargs=backbone_kwargs, converter=converter, log=log)
    if int8:  # what --fast runs: int8 detectors (CPU) and fp16 files (GPU), beside the int8 classifier
        from .quantize import quantize_installed

        quantize_installed(models_dir, card.version, calibration_dir=probe_dir, log=log)
    if source_dir is None and not keep_downloads:
        for path in files.values():
            path.unlink(missing_ok=True)
            note_path(path).unlink(missing_ok=True)
        try:
            download_dir.rmdir()
        except OSError:
            pass
    log(f"installed DeepFaune {card.version} in {models_dir}")
    return manifest
