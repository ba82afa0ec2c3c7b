"""`deepfaune models ...`: stand-ins, list, verify (and install/export with the export extra)."""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import DeepfauneError


def add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="install, export, list and verify model files")
    msub = p.add_subparsers(dest="models_cmd", required=True)
    s = msub.add_parser("stand-in", help="write small random models with DeepFaune's exact ONNX contract (for tests)")
    s.add_argument("dir", type=Path)
    s.add_argument("--version", default="1.4", dest="model_version")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--full-size", action="store_true", help="the real architectures' sizes (benchmarks; ~1.3 GB)")
    for name, text in (("list", "installed and available model versions"),
                       ("verify", "re-hash every model file; non-zero exit on any mismatch")):
        q = msub.add_parser(name, help=text)
        q.add_argument("--models-dir", type=Path, default=None)


def _models_dir(value: Path | None) -> Path:
    from .modelstore import default_models_dir

    return value if value is not None else default_models_dir()


def run_models_command(args) -> int:
    from .modelcards import available_versions, load_card
    from .modelstore import ModelFileError, ModelStore

    if args.models_cmd == "stand-in":
        from .standins import write_standins

        if args.model_version not in available_versions():
            raise DeepfauneError(f"unknown model version {args.model_version!r}; available: {', '.join(available_versions())}")
        manifest = write_standins(args.dir, args.model_version, seed=args.seed, full_size=args.full_size)
        print(f"wrote stand-in models for DeepFaune {args.model_version} (seed {args.seed}) and {manifest}")
        print("stand-ins have random weights: their labels are meaningless; use them to test integrations only.")
        return 0
    store = ModelStore(_models_dir(args.models_dir))
    if args.models_cmd == "list":
        installed = store.versions() if store.manifest_path.exists() else {}
        print(f"models directory: {store.root}")
        for version in available_versions():
            card = load_card(version)
            state = "installed" if version in installed else "available"
            extra = " (stand-in)" if version in installed and store.is_standin(version) else ""
            print(f"  {version}  {state}{extra}  weights licence {card.licence_weights}  from {card.classifier.url}")
        return 0
    if args.models_cmd == "verify":
        try:
            problems = store.verify()
        except ModelFileError as err:
            raise DeepfauneError(str(err)) from err
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            return 1
        print(f"all model files in {store.root} match their sha256")
        return 0
    raise DeepfauneError(f"unknown models command {args.models_cmd}")
