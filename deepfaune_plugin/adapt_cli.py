"""`deepfaune adapt SOURCE [--labels FILE]`: a site head fitted on people's labels, proved by cross-validation
before it is used (issue 34; the method: adapt.py).

The labels are those `deepfaune evaluate` reads (--labels FILE, the labels given in `deepfaune review`, or the
source's own human labels as its host reads them: never a value DeepFaune wrote).  A label DeepFaune lacks becomes
a class of the head.  The features come from the result store (a run kept them: no model runs here); the head
is written to the models directory's heads/ folder, where `deepfaune models list` shows it, and `deepfaune run
SOURCE --adapted NAME` decides with it.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from .api import RunSettings
from .cli_shared import DEFAULTS, host_options, split_list
from .evaluate_cli import EvaluateError, _stored, add_stored_options, choose_labels
from .plugins import PluginError, Registry


class AdaptError(EvaluateError):
    """A head that cannot be fitted (no labels, no features, nothing stored): the message says what to do."""


def add_adapt_parser(sub, registry: Registry) -> list[str]:
    from .adapt import DEFAULT_STRENGTH, FOLDS

    p = sub.add_parser("adapt", help="fit a site head on your own labels from the stored features, and show by "
                                     "cross-validation whether it beats DeepFaune's (no model runs)")
    p.add_argument("source", type=Path, help="the source given to `deepfaune run` (which kept the features)")
    p.add_argument("--labels", type=Path, default=None,
                   help="CSV with a file column and a label column, as for `deepfaune evaluate`; a label DeepFaune "
                        "lacks becomes a class of the head (default: the labels given in `deepfaune review`, else "
                        "the human labels the source holds; never a value DeepFaune wrote)")
    p.add_argument("--reviewed", action="store_true",
                   help="use the labels given in `deepfaune review` even when the source holds labels of its own")
    p.add_argument("--name", default=None,
                   help="the head's name (letters, digits, . _ -; default: the source folder's name and today's date)")
    p.add_argument("--strength", type=float, default=DEFAULT_STRENGTH,
                   help=f"how hard the head is held to DeepFaune's (default {DEFAULT_STRENGTH:g}; larger: closer)")
    p.add_argument("--folds", type=int, default=FOLDS, help=f"cross-validation folds, by sequence (default {FOLDS})")
    p.add_argument("--threshold", type=float, default=DEFAULTS.threshold,
                   help=f"the decision threshold of the comparison (default {DEFAULTS.threshold:g})")
    return add_stored_options(p, registry, "adapt")


def run_adapt_command(args: argparse.Namespace, registry: Registry) -> int:
    from .adapt import compare, extend, fit_head, fit_per_fold, fold_of, relabel
    from .adapted import adapted_table, crop_key, padded, stored_features
    from .decisions import class_keys, decide_run
    from .inference import Inference, open_store
    from .models.heads import MAX_CLASSES, AdaptedHead, HeadError, base_head, head_path, save_head
    from .models.installed import InstalledModels, default_models_dir
    from .pipeline import resolve_host
    from .recorded import take_run_options
    from .store import default_store_path
    from .taxonomy import fold

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    t0 = time.monotonic()
    try:
        take_run_options(args, registry, skip={"output"}, log=log)
        settings = RunSettings(model_version=args.model_version, detector_mode=args.detector, lang="en",
                               maxlag=args.maxlag, exclude=split_list(args.exclude), models_dir=args.models_dir,
                               backend=args.backend, threshold=args.threshold)
        if args.folds < 2:
            raise ValueError(f"--folds must be 2 or more, got {args.folds}")
        if not args.strength > 0:
            raise ValueError(f"--strength must be above 0, got {args.strength}")
    except ValueError as err:
        raise AdaptError(str(err)) from err
    if not args.source.exists():
        raise AdaptError(f"{args.source}: no such file or folder")
    models_dir = Path(settings.models_dir or default_models_dir())
    name = args.name or _default_name(args.source)
    try:
        path = head_path(models_dir, name)
        host = resolve_host(registry, args.host, args.source)
        backend = registry.backend(settings.backend)
    except (PluginError, HeadError) as err:
        raise AdaptError(str(err)) from err
    store_path = args.store or default_store_path()
    if not Path(store_path).is_file():
        raise AdaptError(f"result store {store_path}: none yet; run `deepfaune run {args.source}` first")
    store = open_store(store_path)
    inference = Inference(backend, settings, store, None, False, log)
    chosen = host_options(args)
    try:
        blocks, held = _stored(inference, host, args.source, log, chosen)
        items = [item for block in blocks for item, raw in block if raw is not None]
        raws = [raw for block in blocks for _, raw in block if raw is not None]
        reviewed = store.human_labels(items)
        features = stored_features(store, inference.fingerprint, items)
    finally:
        inference.close()
        store.close()
    if not items:
        raise AdaptError(f"{args.source}: none of its files has stored outputs for these settings; run "
                         f"`deepfaune run {args.source}` with them first")
    classes = inference.class_table()
    sha = ((inference.info.get("files") or {}).get("classifier") or {}).get("sha256", "")
    try:
        onnx_path = InstalledModels(models_dir).verified_path(inference.info["files"]["classifier"]["file"])
        weight0, bias0 = base_head(onnx_path)
    except (KeyError, TypeError) as err:
        raise AdaptError(f"backend {settings.backend!r} names no classifier file whose head could be read") from err
    except (HeadError, OSError, ValueError) as err:
        raise AdaptError(str(err)) from err

    unknown: list[str] = []
    choose_labels(args, classes, reviewed, held, host, chosen, settings, lambda m: None, unknown)  # what is new
    keys = class_keys(classes)
    new = sorted({fold(t)[:64].strip() for t in unknown} - set(keys) - {"", "empty", "human", "vehicle"})
    if len(new) + len(keys) > MAX_CLASSES:
        raise AdaptError(f"{len(new)} labels name no class of DeepFaune {classes.version} (e.g. {new[0]!r}): more "
                         f"than a head of {MAX_CLASSES} classes holds; check the label column")
    table = adapted_table(classes, new)
    truth, problems, where, _ = choose_labels(args, table, reviewed, held, host, chosen, settings, log)
    for p in problems[:20]:
        log(f"{p.relpath}: {p.reason}")
    known = {item.relpath for item in items}
    truth = {rel: key for rel, key in truth.items() if rel in known}
    all_keys = class_keys(table)
    index = {k: i for i, k in enumerate(all_keys)}
    rows, ys, seqs = [], [], []
    base_decisions = decide_run(items, raws, classes, settings)
    sequence_of = {d.relpath: d.seqnum for d in base_decisions}
    for rel, key in truth.items():
        if key in index:
            for vec in features.get(rel, {}).values():
                rows.append(vec)
                ys.append(index[key])
                seqs.append(sequence_of[rel])
    if not truth:
        raise AdaptError(f"{where}: no label names a file of {args.source} that has stored outputs")
    if not rows:
        raise AdaptError(f"{where}: none of the {len(truth)} labelled files has stored features of an animal crop "
                         "(a run with --no-features, or before issue 34, keeps none: `deepfaune store prune --keep`, "
                         "then run again)")
    x, y = np.stack(rows).astype(np.float32), np.array(ys)
    w0, b0 = extend(weight0, bias0, len(new))
    counts = {all_keys[c]: int(n) for c, n in enumerate(np.bincount(y, minlength=len(all_keys))) if n}
    log(f"{len(truth)} labelled files ({where}), {len(y)} animal crops with features in {len(counts)} classes"
        + (f"; new: {', '.join(new)}" if new else ""))

    folds = min(args.folds, len(set(sequence_of[rel] for rel in truth)))
    if folds < 2:
        raise AdaptError(f"{where}: the labelled files make one sequence; cross-validation needs two or more")
    fold_by_seq = fold_of([sequence_of[rel] for rel in truth], folds)
    weight, bias = fit_head(x, y, w0, b0, args.strength)  # first: each fold's fit starts from it
    heads = fit_per_fold(x, y, np.array([fold_by_seq[s] for s in seqs]), w0, b0, folds, args.strength,
                         start=(weight, bias))
    adapted_raws = []
    for item, raw in zip(items, raws):
        f = fold_by_seq.get(sequence_of[item.relpath])
        crops = features.get(item.relpath, {})

        def logits_of(r, crops=crops, f=f, raw=raw):
            key = crop_key(raw, r)
            if f is None or key not in crops:
                return padded(r.logits, len(new))
            w, b = heads[f]
            return (crops[key] @ w.T + b).astype(np.float32)

        adapted_raws.append(relabel(raw, logits_of))
    adapted_decisions = decide_run(items, adapted_raws, table, settings)
    verdict = compare(truth, sequence_of, {d.relpath: d.prediction_key for d in base_decisions},
                      {d.relpath: d.prediction_key for d in adapted_decisions}, folds)
    head = AdaptedHead(name=name, classes=all_keys, weight=weight, bias=bias, model_version=classes.version,
                       classifier_sha256=sha, base_classes=classes.num_classes, counts=counts,
                       created=datetime.now().isoformat(timespec="seconds"), strength=args.strength,
                       verdict=verdict.as_dict(), source=str(Path(args.source).resolve()))
    try:
        written = save_head(models_dir, head)
    except HeadError as err:
        raise AdaptError(str(err)) from err
    for line in verdict.lines():
        print(line)
    print(f"wrote head {name!r} ({len(all_keys)} classes, {len(new)} new) to {written} in "
          f"{time.monotonic() - t0:.1f} s; decide with it: deepfaune run {args.source} --adapted {name}")
    assert written == path
    return 0


def _default_name(source: Path) -> str:
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source).resolve().name).strip("-._")[:40] or "site"
    return f"{stem}-{datetime.now():%Y%m%d}"
