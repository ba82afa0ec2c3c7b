"""`deepfaune models ...`: stand-ins, install, export, list and verify.

`install` converts torch-free by default (numpy and onnx); `export` and `install --converter torch` need the
optional export extra (torch, timm, ultralytics). Everything else runs with the core dependencies only.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..api import RunSettings
from ..errors import DeepfauneError

_EXPORT_HINT = "pip install 'deepfaune-plugin[export]'"
MODELS_DIR_HELP = "folder of ONNX models and their manifest (default: $DEEPFAUNE_MODELS or the user cache)"
DEFAULT_VERSION = RunSettings.model_version  # the run's default, owned by RunSettings
VERSION_HELP = f"DeepFaune model version: 1.3, 1.4 or 1.5 (default: {DEFAULT_VERSION})"


def add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="install, export, list and verify model files")
    msub = p.add_subparsers(dest="models_cmd", required=True)
    s = msub.add_parser("stand-in", help="write small random models with DeepFaune's exact ONNX contract (for tests)")
    s.add_argument("dir", type=Path, help="folder to write the stand-in models and their manifest into")
    s.add_argument("--version", default=DEFAULT_VERSION, dest="model_version", help=VERSION_HELP)
    s.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0): same seed, same weights")
    s.add_argument("--full-size", action="store_true", help="the real architectures' sizes (benchmarks; ~1.3 GB)")

    i = msub.add_parser("install", help="download DeepFaune's official weights, convert them to ONNX (no torch "
                                        "needed), make the int8 variant, register them")
    i.add_argument("model_version", metavar="VERSION", help="DeepFaune version: 1.3, 1.4 or 1.5")
    i.add_argument("--from", dest="source_dir", type=Path, default=None,
                   help="take the official .pt files from this folder instead of downloading them (offline machines)")
    i.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    i.add_argument("--download-dir", type=Path, default=None,
                   help="where downloads collect (default: beside the models directory, or $DEEPFAUNE_DOWNLOADS)")
    i.add_argument("--base-url", default=None, help="fetch every file from this address instead of the card's")
    i.add_argument("--keep-downloads", action="store_true", help="keep the downloaded .pt files after the export")
    i.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 classifier variant")
    i.add_argument("--probes", type=Path, default=None,
                   help="folder of JPEG/PNG photos to check parity on (default: scenes made in code)")
    i.add_argument("--converter", choices=("torchfree", "torch"), default="torchfree",
                   help="torchfree (default): graphs written from the checkpoints' arrays, numpy and onnx only; "
                        f"parity against torch is measured too when torch is installed. torch: the torch/ultralytics "
                        f"export with its parity check ({_EXPORT_HINT})")

    e = msub.add_parser("export", help=f"export one PyTorch checkpoint to ONNX with a parity check (needs {_EXPORT_HINT})")
    esub = e.add_subparsers(dest="export_kind", required=True)
    c = esub.add_parser("classifier", help="a DeepFaune classifier checkpoint (+ bird head) -> one ONNX graph")
    c.add_argument("checkpoint", type=Path, help="the classifier's .pt file")
    c.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    c.add_argument("--bird-head", type=Path, default=None, help="the -bird_head.pt file; merged as output bird_logits")
    c.add_argument("--crop-size", type=int, default=None, help="default: 182 for DINOv2, 224 for DINOv3")
    c.add_argument("--global-pool", default=None, help="default: 'token' for DINOv3, timm's for DINOv2")
    c.add_argument("--int8", type=Path, default=None, help="also write an int8 variant here")
    d = esub.add_parser("detector", help="an ultralytics detector checkpoint -> ONNX with dynamic H and W")
    d.add_argument("checkpoint", type=Path, help="the detector's .pt file")
    d.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    d.add_argument("--size", type=int, default=960, help="input size of the parity check, in pixels (default 960)")
    d.add_argument("--conf", type=float, default=None, help="also check parity at this confidence (e.g. 0.6)")
    for sp in (c, d):
        sp.add_argument("--probes", type=Path, default=None, help="folder of photos to check parity on")

    q = msub.add_parser("quantize", help="add int8 (CPU) and fp16 (GPU) variants of an installed version's models, "
                                         "for `run --fast` (needs onnx and onnxruntime only)")
    q.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    q.add_argument("--version", default=DEFAULT_VERSION, dest="model_version", help=VERSION_HELP)
    q.add_argument("--calibration", type=Path, default=None,
                   help="folder of photos to calibrate the int8 detectors on (default: scenes made in code)")
    q.add_argument("--calibration-count", type=int, default=8, help="how many of its photos (default 8)")

    for name, text in (("list", "installed and available model versions: sizes, licence, origin"),
                       ("verify", "re-hash every model file; non-zero exit on any mismatch")):
        q = msub.add_parser(name, help=text)
        q.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)


def _models_dir(value: Path | None) -> Path:
    from .installed import default_models_dir

    return value if value is not None else default_models_dir()


def _export_api():
    """The export package, or a DeepfauneError saying how to install it."""
    try:
        from .export import deps  # deepfaune_plugin.models.export: core dependencies only
    except ImportError as err:
        raise DeepfauneError(f"the exporter is not installed ({err}); {_EXPORT_HINT}") from err
    return deps


def _mb(n: int | None) -> str:
    return "size unknown" if n is None else f"{n / 1e6:,.1f} MB"


def _cmd_list(models) -> int:
    from .cards import available_versions, load_card
    from .installed import ModelFileError

    print(f"models directory: {models.root}")
    installed: dict = {}
    unreadable = False
    if models.manifest_path.exists():
        try:
            installed = models.manifest["versions"]
        except ModelFileError as err:  # the list of what can be installed still helps; the status says it failed
            print(f"deepfaune: error: manifest unreadable: {err}", file=sys.stderr)
            unreadable = True
    for version in available_versions():
        card = load_card(version)
        entry = installed.get(version)
        if entry is None:
            print(f"{version}  available  weights {card.licence_weights}, code {card.licence_code}")
            print(f"      classifier {card.classifier.file} ({_mb(card.classifier.size_bytes)}) from {card.classifier.url}")
            for name, spec in card.detectors.items():
                print(f"      detector {name} {spec.file} from {spec.url}")
            continue
        tag = " (stand-in: random weights)" if models.is_standin(version) else ""
        print(f"{version}  installed{tag}  weights {card.licence_weights}, code {card.licence_code}")
        roles = [("classifier", entry.get("classifier")), ("classifier int8", entry.get("classifier_int8"))]
        roles += [(f"detector {m}", f) for m, f in entry.get("detectors", {}).items()]
        roles += [(f"detector {m} int8", f) for m, f in entry.get("detectors_int8", {}).items()]
        for role, name in roles:
            if not name:
                continue
            info = models.manifest["files"].get(name, {})
            origin = ((info.get("exported_from") or {}).get("url")
                      or (f"{info['derived_from']} (quantised)" if info.get("derived_from") else info.get("source", "?")))
            parity = info.get("parity") or {}
            figures = ""
            if "max_abs_logit" in parity:
                figures = f"  parity max|dlogit| {parity['max_abs_logit']:.1e}"
            elif "min_iou" in parity:
                figures = f"  parity min IoU {parity['min_iou']:.6f}"
            elif parity.get("measured") is False:
                figures = "  converted torch-free; parity not measured here (no torch)"
            elif "max_abs_logit" in (drift := info.get("drift") or {}):
                figures = f"  int8 drift max|dlogit| {drift['max_abs_logit']:.2f}"
            elif "max_abs_score" in drift:  # an int8 detector
                figures = (f"  int8 drift max|dscore| {drift['max_abs_score']:.3f}, same box count on "
                           f"{drift['same_box_count']}/{drift['images']} images")
            if info.get("converter") == "torchfree" and parity.get("measured") is not False:
                figures += " (torch-free)"
            print(f"      {role}: {name} ({_mb(info.get('bytes'))}) from {origin}{figures}")
    return _list_heads(models.root) or (1 if unreadable else 0)


def _list_heads(root) -> int:
    """The adapted heads (`deepfaune adapt`): name, model, classes, labels, date and the cross-validated verdict."""
    from .heads import list_heads

    heads, problems = list_heads(root)
    for head in heads:
        v = head.verdict
        verdict = ("" if not v else f"; cross-validated accuracy {v['deepfaune']['value']:.1%} -> "
                   f"{v['adapted']['value']:.1%}: " + (f"helps (offered for {head.source})" if head.helps
                                                           else "does NOT help (not offered)"))
        counts = ", ".join(f"{k} {n}" for k, n in sorted(head.counts.items(), key=lambda kv: -kv[1])[:8])
        print(f"head {head.name}  model {head.model_version} ({head.classifier_sha256[:12]}), {len(head.classes)} "
              f"classes ({len(head.new_classes)} new{': ' + ', '.join(head.new_classes[:5]) if head.new_classes else ''}"
              f"), made {head.created}{verdict}")
        print(f"      labelled crops: {counts}{' ...' if len(head.counts) > 8 else ''}")
    for line in problems:
        print(f"deepfaune: error: {line}", file=sys.stderr)
    return 1 if problems else 0


def _cmd_install(args) -> int:
    from .cards import available_versions

    if args.model_version not in available_versions():
        raise DeepfauneError(f"unknown model version {args.model_version!r}; available: {', '.join(available_versions())}")
    if args.converter == "torch":
        _export_api().require("torch")  # the clear message before anything else
    from .export.install import install

    install(args.model_version, _models_dir(args.models_dir), source_dir=args.source_dir,
            download_dir=args.download_dir, base_url=args.base_url, int8=args.int8,
            keep_downloads=args.keep_downloads, probe_dir=args.probes, converter=args.converter)
    return 0


def _cmd_export(args) -> int:
    deps = _export_api()
    deps.require("torch")
    from .export.probes import probe_crops, probe_images

    images = probe_images(directory=args.probes)
    if args.export_kind == "classifier":
        from .export.classifier import export_classifier

        result = export_classifier(args.checkpoint, args.output, bird_head=args.bird_head,
                                   crop_size=args.crop_size, global_pool=args.global_pool)
        p = result.parity
        print(f"wrote {result.path}: {result.backbone}, {result.num_classes} classes at {result.crop_size} px, "
              f"position table {result.position_table}")
        print(f"parity on {p.probes} crops: max |delta logit| {p.max_abs_logit:.2e}"
              + (f", bird {p.max_abs_bird_logit:.2e}" if p.max_abs_bird_logit is not None else ""))
        if args.int8 is not None:
            from .export.quantize import quantize_classifier

            d = quantize_classifier(args.output, args.int8, probe_crops(result.crop_size, images=images),
                                    result.crop_size)
            print(f"wrote {args.int8}: int8 drift max |delta logit| {d.max_abs_logit:.3f}, "
                  f"top-1 agreement {d.top1_agree:.0%}")
        return 0
    from .export.detector import export_detector

    result = export_detector(args.checkpoint, args.output, size=args.size, card_conf=args.conf, images=images)
    q = result.parity
    print(f"wrote {result.path}: {result.architecture}, {result.anchors_at_960x736} anchors at 960x736")
    print(f"parity on {q.images} images: {q.boxes} boxes, min IoU {q.min_iou:.6f}, "
          f"max |delta score| {q.max_abs_raw_score:.2e}")
    return 0


def run_models_command(args) -> int:
    from .cards import available_versions
    from .installed import ModelFileError, InstalledModels

    if args.models_cmd == "stand-in":
        from .standins import write_standins

        if args.model_version not in available_versions():
            raise DeepfauneError(f"unknown model version {args.model_version!r}; available: {', '.join(available_versions())}")
        manifest = write_standins(args.dir, args.model_version, seed=args.seed, full_size=args.full_size)
        print(f"wrote stand-in models for DeepFaune {args.model_version} (seed {args.seed}) and {manifest}")
        print("stand-ins have random weights: their labels are meaningless; use them to test integrations only.")
        return 0
    if args.models_cmd == "install":
        return _cmd_install(args)
    if args.models_cmd == "export":
        return _cmd_export(args)
    if args.models_cmd == "quantize":
        from .export.quantize import quantize_installed

        try:
            made = quantize_installed(_models_dir(args.models_dir), args.model_version, args.calibration,
                                      args.calibration_count, log=lambda m: print(m, file=sys.stderr))
        except (ValueError, ModelFileError) as err:
            raise DeepfauneError(str(err)) from err
        print(f"int8 (CPU) and fp16 (GPU) models ready for --fast ({len(made)} written)")
        return 0
    installed = InstalledModels(_models_dir(args.models_dir))
    if args.models_cmd == "list":
        return _cmd_list(installed)
    if args.models_cmd == "verify":
        try:
            problems = installed.verify()
        except ModelFileError as err:
            raise DeepfauneError(str(err)) from err
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 1
        count = len(installed.manifest["files"])
        print(f"all {count} model files in {installed.root} match their sha256")
        return 0
    raise DeepfauneError(f"unknown models command {args.models_cmd}")
