"""`deepfaune evaluate SOURCE [--labels FILE]`: DeepFaune's decisions against the user's own labels.

The labels come from a CSV (--labels), else from the source itself, as its host reads them (`Manifest.human_labels`,
with the host options that join `evaluate`, e.g. the data field that holds them).

It reads the source through its host (nothing of the user's is written) and the raw outputs a previous
`deepfaune run` left in the result store (no model is loaded), then re-decides them at every threshold
from 0.50 to 0.95 (with --adapted NAME, by the site head NAME from the stored features: adapted.py). Files without stored outputs for these settings are named and left out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .api import DETECTOR_MODES, RunSettings
from .bulk import without_gc
from .cli_shared import DEFAULTS, add_host_options, host_options, split_list
from .errors import DeepfauneError
from .evaluate import LEVELS, THRESHOLDS, Evaluation, read_labels, threshold_for, truth_keys, write_csv
from .plugins import PluginError, Registry


class EvaluateError(DeepfauneError):
    """An evaluation that cannot be made (no labels, nothing stored): the message says what to do."""


def add_evaluate_parser(sub, registry: Registry) -> list[str]:
    """The evaluate parser, with the hosts' options that join it; returns what was left out of them, and why."""
    p = sub.add_parser("evaluate", help="compare DeepFaune's decisions with your own labels, for every threshold "
                                        "(from the result store: run `deepfaune run` first; no model runs)")
    p.add_argument("source", type=Path, help="the source given to `deepfaune run`")
    p.add_argument("--labels", type=Path, default=None,
                   help="CSV with a file column (relpath, file, path or filename: as in deepfaune.csv) and a label "
                        "column (label, species or prediction): a class in any language of the model, or empty, "
                        "human, vehicle, or a scientific name or a name in the taxonomy table's languages (default: the "
                        "human labels the source holds, as its host reads them: see the host options; never a value "
                        "DeepFaune wrote there itself)")
    p.add_argument("--species-lists", action="store_true",
                   help="the labels give a list of species per file (several rows of one file, or one cell such as "
                        "\"fox:2;badger\": ';' or '|' between species, ':N' for N animals): score each species' "
                        "presence per file and per sequence, and MaxN per sequence, against every animal box "
                        "(needs a run with --every-animal); files with one species also get the single-label scores")
    p.add_argument("--reviewed", action="store_true",
                   help="compare with the labels people gave in `deepfaune review` (kept in the result store) "
                        "instead of the source's own; used anyway when the source holds none")
    p.add_argument("--threshold", type=float, default=DEFAULTS.threshold,
                   help=f"threshold of the per-class table (default {DEFAULTS.threshold:g})")
    p.add_argument("--target", type=float, default=None,
                   help="an accuracy to reach (e.g. 0.95): says the lowest threshold that reaches it per sequence")
    p.add_argument("--output", "-o", type=Path, default=Path("deepfaune-evaluation"),
                   help="folder for the CSV files (default: ./deepfaune-evaluation)")
    p.add_argument("--adapted", metavar="NAME", default=None,
                   help="score the decisions of the site head NAME made by `deepfaune adapt` (from the stored "
                        "features; no model runs) instead of DeepFaune's head")
    return add_stored_options(p, registry, "evaluate")


def add_stored_options(p, registry: Registry, command: str) -> list[str]:
    """The options naming the stored outputs of a run (its settings, models, store) and the hosts' options that
    join `command`: evaluate and adapt read what a run left, with the same settings."""
    same = "as given to `deepfaune run`"
    p.add_argument("--host", default="auto", help=f"data manager of SOURCE (default: auto-detect), {same}")
    p.add_argument("--backend", default=DEFAULTS.backend,
                   help=f"classification backend (default: {DEFAULTS.backend}), {same}")
    p.add_argument("--model-version", default=DEFAULTS.model_version,
                   help=f"DeepFaune model version (default: {DEFAULTS.model_version}), {same}")
    p.add_argument("--detector", default=DEFAULTS.detector_mode, choices=DETECTOR_MODES, help=f"detector mode, {same}")
    p.add_argument("--maxlag", type=float, default=DEFAULTS.maxlag,
                   help=f"max seconds between images of a sequence (default {DEFAULTS.maxlag:g})")
    p.add_argument("--exclude", action="append", metavar="SPECIES", help=f"species absent from the study area, {same}")
    p.add_argument("--models-dir", type=Path, default=None, help=f"the models directory, {same}")
    p.add_argument("--store", type=Path, default=None, help="the result store the run used (default: the user's)")
    return add_host_options(p, registry, command)


@without_gc()  # a season's items, outputs and decisions at once (bulk.py)
def run_evaluate_command(args: argparse.Namespace, registry: Registry) -> int:
    from .adapted import decided_by, open_decider
    from .inference import Inference, open_store
    from .pipeline import resolve_host
    from .recorded import take_run_options
    from .species_eval import SpeciesEvaluation
    from .store import default_store_path

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    try:
        take_run_options(args, registry, skip={"output"}, log=log)  # the run's settings unless given here
        settings = RunSettings(model_version=args.model_version, detector_mode=args.detector, lang="en",
                               maxlag=args.maxlag, exclude=split_list(args.exclude), models_dir=args.models_dir,
                               backend=args.backend, threshold=args.threshold)
        if args.target is not None and not 0 < args.target <= 1:
            raise ValueError(f"--target must be an accuracy between 0 and 1, got {args.target}")
    except ValueError as err:
        raise EvaluateError(str(err)) from err
    if not args.source.exists():
        raise EvaluateError(f"{args.source}: no such file or folder")
    _output_folder(args.output)  # refused before the source is read, made only once there is something to write
    try:
        host = resolve_host(registry, args.host, args.source)
        backend = registry.backend(settings.backend)
    except PluginError as err:
        raise EvaluateError(str(err)) from err
    store_path = args.store or default_store_path()
    if not Path(store_path).is_file():  # never made here: evaluating writes nothing, not even an empty store
        raise EvaluateError(f"result store {store_path}: none yet; run `deepfaune run {args.source}` first")
    store = open_store(store_path)
    inference = Inference(backend, settings, store, None, False, log)  # describes, checks --exclude; loads no model
    chosen = host_options(args)
    try:
        blocks, held = _stored(inference, host, args.source, log, chosen)
        reviewed = store.human_labels([item for block in blocks for item, _ in block])  # `deepfaune review`'s
        decider = None if args.adapted is None else open_decider(args.adapted, inference, store, settings)
        if decider is not None:  # the site head's logits, from the stored features, before the store closes
            blocks = [decided_by(decider, block) for block in blocks]
    finally:
        inference.close()
        store.close()
    classes = inference.class_table()  # described (`_stored` refused a backend that cannot say)
    if decider is not None:
        classes = decider.classes(classes)
        if (note := decider.note()) is not None:
            log(note)
    outputs = [pair for block in blocks for pair in block]
    kept = [(item, raw) for item, raw in outputs if raw is not None]
    missing = [item.relpath for item, raw in outputs if raw is None]
    if not kept:
        raise EvaluateError(f"{args.source}: none of its {len(outputs)} files has stored outputs for these settings "
                            f"(model {settings.model_version}, detector {settings.detector_mode}); run "
                            f"`deepfaune run {args.source}` with them first")
    if missing:
        log(f"{len(missing)} file(s) have no stored outputs for these settings and are left out, e.g. {missing[0]}")
    truth, problems, where, lists = choose_labels(args, classes, reviewed, held, host, chosen, settings, log)
    for p in problems[:20]:
        log(f"{p.relpath}: {p.reason}")
    known = {item.relpath for item, _ in kept}
    unknown = [rel for rel in truth if rel not in known]
    if unknown:
        log(f"{len(unknown)} labelled file(s) are not among the evaluated files (e.g. {unknown[0]})")
    truth = {rel: key for rel, key in truth.items() if rel in known}
    if lists is not None:
        lists = {rel: counts for rel, counts in lists.items() if rel in known}
        several = sum(len(counts) > 1 for counts in lists.values())
        if several:
            log(f"{several} file(s) list several labels: left out of the single-label scores, scored per species")
    if not truth and not lists:
        raise EvaluateError(f"{where}: no label names a file of {args.source} that has stored outputs")

    evaluation = Evaluation(truth, classes, settings, THRESHOLDS)  # block by block: whole sequences each
    species = None if lists is None else SpeciesEvaluation(lists, classes, settings)
    for block in blocks:
        stored_items = [item for item, raw in block if raw is not None]
        stored_raws = {raw.relpath: raw for _, raw in block if raw is not None}
        evaluation.add(stored_items, stored_raws)
        if species is not None:
            species.add(stored_items, stored_raws)
    scores = evaluation.scores()
    confusions = evaluation.confusion
    out = _output_folder(args.output, make=True)
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
                   for level in LEVELS for c in evaluation.per_class(level)]),
        write_csv(out / "confusion.csv", ["level", "threshold", "human", "deepfaune", "files"],
                  [(level, settings.threshold, h, p, n) for level in LEVELS
                   for (h, p), n in sorted(confusions[level].items())]),
    ]
    if truth:
        head = "" if decider is None else f", adapted head {decider.head.name}"
        print(f"{len(truth)} labelled files of {len(kept)} evaluated (model {classes.version}{head}):")
        print("threshold  coverage(image)  accuracy(image)  coverage(sequence)  accuracy(sequence)")
    by = {(s.level, s.threshold): s for s in scores}
    for t in sorted({s.threshold for s in scores}) if truth else ():
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
    if species is not None:
        written += _species_outputs(species, out, settings.threshold, log)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _species_outputs(species, out: Path, threshold: float, log) -> list[Path]:
    """presence.csv and maxn.csv (`species`: a `species_eval.SpeciesEvaluation`), and their summary in the
    terminal; nothing but a note without per-box outputs."""
    from .species_eval import ALL

    if species.without_boxes:
        log(f"{len(species.without_boxes)} labelled file(s) have no per-box outputs stored (e.g. "
            f"{species.without_boxes[0]}): left out of the per-species scores")
    if not species.files:
        print("per-species scores need a run with --every-animal (each animal box's outputs in the result store): "
              "run `deepfaune run SOURCE --every-animal` with these settings, then evaluate again")
        return []

    def ratio(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    presence, maxn = species.presence_scores(), species.maxn_scores()
    written = [
        write_csv(out / "presence.csv", ["level", "threshold", "species", "labelled", "predicted", "correct",
                                         "precision", "recall"],
                  [(p.level, threshold, p.label, p.support, p.predicted, p.correct, ratio(p.precision),
                    ratio(p.recall)) for p in presence]),
        write_csv(out / "maxn.csv", ["threshold", "species", "sequences", "exact", "exact_rate", "mae"],
                  [(threshold, m.species, m.sequences, m.exact, ratio(m.exact_rate), ratio(m.mae)) for m in maxn]),
    ]
    def pct(x: float | None) -> str:
        return "   -  " if x is None else f"{x:6.1%}"

    print(f"per species, every animal box at threshold {threshold:g}: {species.files} labelled files in "
          f"{species.sequences} sequences")
    print("species              precision(image)  recall(image)  precision(sequence)  recall(sequence)  "
          "MaxN exact  MaxN MAE")
    by = {(p.level, p.label): p for p in presence}
    rows = {m.species: m for m in maxn}
    for name in sorted({p.label for p in presence}) + [ALL]:
        im, sq, m = by.get(("image", name)), by.get(("sequence", name)), rows.get(name)
        print(f"  {name[:18]:<18} {pct(im and im.precision):>10}        {pct(im and im.recall):>10}     "
              f"{pct(sq and sq.precision):>10}           {pct(sq and sq.recall):>10}      "
              f"{pct(m and m.exact_rate):>8}  {'   -' if m is None or m.mae is None else f'{m.mae:6.2f}'}")
    return written


def choose_labels(args, classes, reviewed, held, host, chosen, settings, log,
                  unknown: list[str] | None = None) -> tuple[dict[str, str], list, str, dict | None]:
    """(relpath -> key, problems, where they come from, the species lists or None): --labels FILE, else the
    labels given in `deepfaune review` (with --reviewed, or where the source holds none), else the source's own
    human labels (never a value DeepFaune wrote: the hosts leave those out). With --species-lists, {relpath: {key:
    animals}} from --labels or the source's labels, the files with one label also as single labels. `unknown`
    gets the labels naming no class (`read_labels`; `deepfaune adapt` learns them)."""
    from .species_eval import held_species_lists, read_species_lists, single_labels

    species_lists = getattr(args, "species_lists", False)
    lists = None  # --species-lists: {relpath: {key: animals}}
    if species_lists and args.reviewed:
        raise EvaluateError("--species-lists reads --labels or the source's own labels, not those given in "
                            "`deepfaune review` (one label per file)")
    if args.labels is not None:
        try:
            if species_lists:
                lists, problems = read_species_lists(args.labels, classes)
                truth = single_labels(lists)
            else:
                truth, problems = read_labels(args.labels, classes, unknown=unknown)
        except ValueError as err:
            raise EvaluateError(str(err)) from err
        where = str(args.labels)
    elif species_lists and held:
        lists, problems = held_species_lists(held, classes, settings.bird)
        truth = single_labels(lists)
        where = f"the human labels of {args.source}"
        log(f"{len(held)} file(s) carry a human label in {args.source} ({host.name}); no --labels given: using them")
    elif reviewed and (args.reviewed or not held):
        truth, problems = {rel: h.key for rel, h in reviewed.items()}, []
        where = "the labels given in `deepfaune review`"
        log(f"{len(reviewed)} file(s) carry a label given in `deepfaune review`: using them")
    elif args.reviewed:
        raise EvaluateError(f"{args.source}: nobody has labelled its files in `deepfaune review` yet")
    elif held:
        truth, problems = truth_keys(held, classes, settings.bird, unknown=unknown)
        where = f"the human labels of {args.source}"
        log(f"{len(held)} file(s) carry a human label in {args.source} ({host.name}); no --labels given: using them")
    else:
        raise EvaluateError(f"{args.source}: the source holds no human labels ({host.name}: "
                            + ("none left once DeepFaune's own values and what cannot be read are left out, "
                               "as said above" if any(chosen.values()) else host.labels_held)
                            + "); give them with --labels FILE "
                            "(a CSV with a file column and a label column)")
    return truth, problems, where, lists




def _output_folder(out: Path, make: bool = False) -> Path:
    """The --output folder (`make`: made if need be); a file there, or a path no folder can be made at, is
    refused in one line."""
    if out.exists() and not out.is_dir():
        raise EvaluateError(f"--output {out}: is a file, not a folder; name a folder for the evaluation's CSV files")
    above = next((p for p in (out, *out.absolute().parents) if p.exists()), None)
    if above is not None and not above.is_dir():
        raise EvaluateError(f"--output {out}: cannot be made, {above} is a file")
    if not make:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EvaluateError(f"--output {out}: cannot make this folder ({err.strerror or err}); name another "
                            "one") from None
    return out


def _stored(inference, host, source: Path, log, chosen=None) -> tuple[list, dict[str, str | tuple[str, ...]]]:
    """([[(item, its stored raw output or None)] per block of whole sequences], the human labels the source
    holds), in the source's order: the host reads the source (with its options' defaults, and `chosen`;
    nothing is written), the result store answers, no model runs."""
    from .pipeline import read_to_look

    if inference.description is None:
        raise EvaluateError(f"backend {inference.backend.name!r} keeps no outputs in the result store; evaluate "
                            "re-decides stored outputs only")
    options = {o.dest: (bool(o.default) if o.flag else o.default) for o in host.options}
    options["output"] = None
    options.update({k: v for k, v in (chosen or {}).items() if v})
    manifest, blocks = read_to_look(host, source, options, log)
    for p in manifest.problems:  # what the host could not read or label, as a run says it
        log(f"warning: {p.relpath}: {p.reason}")
    found = inference.stored([item for block in blocks for item in block])
    return [[(item, found.get(item.relpath)) for item in block] for block in blocks], dict(manifest.human_labels)
