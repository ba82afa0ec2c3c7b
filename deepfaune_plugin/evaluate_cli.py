"""`deepfaune evaluate SOURCE --labels FILE`: DeepFaune's decisions against the user's own labels.

It reads the source through its host (nothing of the user's is written) and the raw outputs a previous
`deepfaune run` left in the result store (no model is loaded), then re-decides them at every threshold
from 0.50 to 0.95. Files without stored outputs for these settings are named and left out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .api import DETECTOR_MODES, RunSettings
from .decisions import decide_run
from .errors import DeepfauneError
from .evaluate import LEVELS, THRESHOLDS, per_class, read_labels, score, sweep, threshold_for, write_csv
from .plugins import PluginError, Registry


class EvaluateError(DeepfauneError):
    """An evaluation that cannot be made (no labels, nothing stored): the message says what to do."""


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="compare DeepFaune's decisions with your own labels, for every threshold "
                                        "(from the result store: run `deepfaune run` first; no model runs)")
    p.add_argument("source", type=Path, help="the source given to `deepfaune run`")
    p.add_argument("--labels", type=Path, required=True,
                   help="CSV with a file column (relpath, file, path or filename: as in deepfaune.csv) and a label "
                        "column (label, species or prediction): a class in any language of the model, or empty, "
                        "human, vehicle")
    p.add_argument("--threshold", type=float, default=0.8, help="threshold of the per-class table (default 0.8)")
    p.add_argument("--target", type=float, default=None,
                   help="an accuracy to reach (e.g. 0.95): says the lowest threshold that reaches it per sequence")
    p.add_argument("--output", "-o", type=Path, default=Path("deepfaune-evaluation"),
                   help="folder for the CSV files (default: ./deepfaune-evaluation)")
    same = "as given to `deepfaune run`"
    p.add_argument("--host", default="auto", help=f"data manager of SOURCE (default: auto-detect), {same}")
    p.add_argument("--backend", default="deepfaune", help=f"classification backend (default: deepfaune), {same}")
    p.add_argument("--model-version", default="1.4", help=f"DeepFaune model version (default: 1.4), {same}")
    p.add_argument("--detector", default="DFbsMDS", choices=DETECTOR_MODES, help=f"detector mode, {same}")
    p.add_argument("--maxlag", type=float, default=10, help="max seconds between images of a sequence (default 10)")
    p.add_argument("--exclude", action="append", metavar="SPECIES", help=f"species absent from the study area, {same}")
    p.add_argument("--models-dir", type=Path, default=None, help=f"the models directory, {same}")
    p.add_argument("--store", type=Path, default=None, help="the result store the run used (default: the user's)")


def run_evaluate_command(args: argparse.Namespace, registry: Registry) -> int:
    from .cli import _split_list
    from .inference import Inference, open_store
    from .pipeline import resolve_host
    from .store import default_store_path

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    try:
        settings = RunSettings(model_version=args.model_version, detector_mode=args.detector, lang="en",
                               maxlag=args.maxlag, exclude=_split_list(args.exclude), models_dir=args.models_dir,
                               backend=args.backend, threshold=args.threshold)
        if args.target is not None and not 0 < args.target <= 1:
            raise ValueError(f"--target must be an accuracy between 0 and 1, got {args.target}")
    except ValueError as err:
        raise EvaluateError(str(err)) from err
    if not args.source.exists():
        raise EvaluateError(f"{args.source}: no such file or folder")
    try:
        host = resolve_host(registry, args.host, args.source)
        backend = registry.backend(settings.backend)
    except PluginError as err:
        raise EvaluateError(str(err)) from err
    store = open_store(args.store or default_store_path())
    inference = Inference(backend, settings, store, None, False, log)  # describes, checks --exclude; loads no model
    try:
        outputs = _stored(inference, host, args.source, log)
    finally:
        inference.close()
        store.close()
    classes = inference.description.classes
    kept = [(item, raw) for item, raw in outputs if raw is not None]
    missing = [item.relpath for item, raw in outputs if raw is None]
    if not kept:
        raise EvaluateError(f"{args.source}: none of its {len(outputs)} files has stored outputs for these settings "
                            f"(model {settings.model_version}, detector {settings.detector_mode}); run "
                            f"`deepfaune run {args.source}` with them first")
    if missing:
        log(f"{len(missing)} file(s) have no stored outputs for these settings and are left out, e.g. {missing[0]}")
    try:
        truth, problems = read_labels(args.labels, classes)
    except ValueError as err:
        raise EvaluateError(str(err)) from err
    for p in problems[:20]:
        log(f"{p.relpath}: {p.reason}")
    known = {item.relpath for item, _ in kept}
    unknown = [rel for rel in truth if rel not in known]
    if unknown:
        log(f"{len(unknown)} labelled file(s) are not among the evaluated files (e.g. {unknown[0]})")
    truth = {rel: key for rel, key in truth.items() if rel in known}
    if not truth:
        raise EvaluateError(f"{args.labels}: no label names a file of {args.source} that has stored outputs")

    items, raws = [item for item, _ in kept], [raw for _, raw in kept]
    scores = sweep(items, raws, classes, settings, truth, sorted(set(THRESHOLDS) | {args.threshold}))
    decisions = decide_run(items, raws, classes, settings)
    confusions = {level: score(decisions, truth, level, settings.threshold)[1] for level in LEVELS}
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_csv(out / "thresholds.csv", ["level", "threshold", "labelled", "covered", "coverage", "correct",
                                           "accuracy"],
                  [(s.level, s.threshold, s.labelled, s.covered, round(s.coverage, 4), s.correct, round(s.accuracy, 4))
                   for s in scores]),
        write_csv(out / "classes.csv", ["level", "threshold", "label", "support", "predicted", "correct",
                                        "precision", "recall"],
                  [(c.level, settings.threshold, c.label, c.support, c.predicted, c.correct,
                    None if c.precision is None else round(c.precision, 4),
                    None if c.recall is None else round(c.recall, 4))
                   for level in LEVELS for c in per_class(confusions[level], level)]),
        write_csv(out / "confusion.csv", ["level", "threshold", "human", "deepfaune", "files"],
                  [(level, settings.threshold, h, p, n) for level in LEVELS
                   for (h, p), n in sorted(confusions[level].items())]),
    ]
    print(f"{len(truth)} labelled files of {len(kept)} evaluated (model {classes.version}):")
    print("threshold  coverage(image)  accuracy(image)  coverage(sequence)  accuracy(sequence)")
    by = {(s.level, s.threshold): s for s in scores}
    for t in sorted({s.threshold for s in scores}):
        im, sq = by[("image", t)], by[("sequence", t)]
        print(f"  {t:.2f}      {im.coverage:6.1%}           {im.accuracy:6.1%}           "
              f"{sq.coverage:6.1%}              {sq.accuracy:6.1%}")
    if args.target is not None:
        best = threshold_for(scores, args.target)
        if best is None:
            print(f"no threshold from 0.50 to 0.95 reaches {args.target:.0%} accuracy per sequence")
        else:
            print(f"threshold {best.threshold:.2f} reaches {best.accuracy:.1%} accuracy per sequence "
                  f"(target {args.target:.0%}), labelling {best.coverage:.1%} of the labelled files")
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _stored(inference, host, source: Path, log) -> list:
    """[(item, its stored raw output or None)], in the source's order: the host reads the source (with its
    options' defaults; nothing is written), the result store answers, no model runs."""
    from .runlog import host_log

    if inference.description is None:
        raise EvaluateError(f"backend {inference.backend.name!r} keeps no outputs in the result store; evaluate "
                            "re-decides stored outputs only")
    options = {o.dest: (bool(o.default) if o.flag else o.default) for o in host.options}
    options["output"] = None
    with host_log(log):
        manifest = host.read(source, options)
    items = [item for block in manifest.blocks() for item in block]
    found = inference.stored(items)
    return [(item, found.get(item.relpath)) for item in items]
