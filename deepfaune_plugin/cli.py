"""The `deepfaune` command: run, models, plugins, sort."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .api import DETECTOR_MODES, RunSettings
from .errors import DeepfauneError
from .models_cli import MODELS_DIR_HELP, add_models_parser, run_models_command
from .plugins import PluginError, Registry, default_registry


class CliError(DeepfauneError):
    """A user-facing error: printed as one line, exit status 1."""


#: Exit statuses, so that a script (or a cluster job) can tell a clean season from one to look at again.
EXIT_OK = 0  # every file has a result (some may carry a warning)
EXIT_ERROR = 1  # stopped with a message: nothing new was written (bad option or source, full disk...)
EXIT_USAGE = 2  # the command line itself is wrong (argparse)
EXIT_INCOMPLETE = 3  # finished and wrote its outputs, but some files failed or were skipped
EXIT_INTERRUPTED = 130  # Ctrl-C: the same command resumes

EXIT_CODES_HELP = f"""exit status:
  {EXIT_OK}    every file has a result (a file with a warning, e.g. a truncated JPEG, has one)
  {EXIT_ERROR}    stopped with an error message; the previous outputs are unchanged
  {EXIT_USAGE}    the command line is wrong (unknown option, bad value)
  {EXIT_INCOMPLETE}    finished and wrote the outputs, but some files have no result: they failed
       (the 'failure' column) or were skipped (missing, not fetched); see the summary and deepfaune-run.json
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C): run the same command again to resume"""


def _split_list(values: Sequence[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ():
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return tuple(out)


def _add_run(sub, registry: Registry) -> list[str]:
    """The run parser, with every host's options; returns what was left out of a plugin's options, and why."""
    p = sub.add_parser("run", help="classify the media of a source and write the results back into it",
                       description="Classify every image of SOURCE with DeepFaune and write the results where the "
                                   "source's data manager expects them.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, help="a folder, a Timelapse root, a camtrapR tree or record table, a Camtrap DP package")
    p.add_argument("--host", default="auto", help="data manager of SOURCE (default: auto-detect); see `deepfaune plugins`")
    p.add_argument("--backend", default="deepfaune", help="classification backend (default: deepfaune)")
    p.add_argument("--model-version", default="1.4", help="DeepFaune model version (default: 1.4)")
    p.add_argument("--detector", default="DFbsMDS", choices=DETECTOR_MODES,
                   help="detector mode (default DFbsMDS: DeepFaune's detector, MegaDetector when it finds nothing; "
                        "existing: no detector, classify the boxes the source already holds, e.g. Timelapse's "
                        "--use-existing-detections)")
    p.add_argument("--threshold", type=float, default=0.8, help="score under which a label is 'undefined' (default 0.8)")
    p.add_argument("--maxlag", type=float, default=10, help="max seconds between images of a sequence (default 10)")
    p.add_argument("--lang", default="fr", help="label language: fr, en, it, de, es (+ no, se, pt for 1.5)")
    p.add_argument("--exclude", action="append", metavar="SPECIES",
                   help="species absent from the study area (repeat, or comma-separated)")
    p.add_argument("--bird", dest="bird", action="store_true", default=False, help="refine 'bird' into 8 bird groups")
    p.add_argument("--no-bird", dest="bird", action="store_false", help="keep 'bird' as one label (the default)")
    p.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference (default: all cores)")
    p.add_argument("--fast", action="store_true",
                   help="int8 models (made by `deepfaune models quantize`): about 1.5x faster, answers differ "
                        "from DeepFaune's (speed and agreement in benchmarks/RESULTS.md)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run inference on a Dask cluster: a scheduler address (tcp://host:8786) or local:N for N "
                        "worker processes on this computer; needs pip install 'deepfaune-plugin[dask]' "
                        "(see docs/cluster.md)")
    p.add_argument("--output", "-o", type=Path, default=None, help="output file (.csv or .xlsx for a folder)")
    p.add_argument("--store", type=Path, default=None,
                   help="result store (SQLite) that makes runs resumable and re-decisions instant "
                        "(default: one per source in the user cache)")
    p.add_argument("--no-store", action="store_true", help="keep nothing between runs")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write deepfaune-report.html (the run record deepfaune-run.json is always written)")
    p.add_argument("--blur-humans", action="store_true", help="blur people in the report's thumbnails")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    seen: dict[str, str] = {}
    left_out: list[str] = []
    group = p.add_argument_group("host options")
    for reg in registry.hosts.values():
        try:
            options = list(getattr(reg.obj, "options", ()))
        except Exception as err:  # an outside host's options are its own code: never a traceback here
            left_out.append(f"host {reg.name!r} ({reg.origin}): its options are unusable ({err}); none offered")
            continue
        for opt in options:
            try:
                if opt.name in seen:
                    continue
                seen[opt.name] = reg.name
                if opt.flag:
                    group.add_argument(f"--{opt.name}", dest=f"host_{opt.dest}", action="store_true",
                                       default=bool(opt.default), help=f"[{reg.name}] {opt.help}")
                else:
                    group.add_argument(f"--{opt.name}", dest=f"host_{opt.dest}",
                                       action="append" if opt.multiple else "store", metavar=opt.dest.upper(),
                                       default=opt.default, help=f"[{reg.name}] {opt.help}")
            except (argparse.ArgumentError, AttributeError, TypeError, ValueError) as err:  # e.g. --output again
                left_out.append(f"host {reg.name!r} ({reg.origin}): option {getattr(opt, 'name', opt)!r} "
                                f"left out ({err})")
    return left_out


def _cmd_run(args, registry: Registry) -> int:
    from .errors import RunError, RunInterrupted
    from .pipeline import run

    try:
        settings = RunSettings(
            model_version=args.model_version, detector_mode=args.detector, threshold=args.threshold,
            maxlag=args.maxlag, lang=args.lang, exclude=_split_list(args.exclude), bird=args.bird,
            models_dir=args.models_dir, threads=args.threads, fast=args.fast, backend=args.backend,
            scheduler=args.scheduler,
        )
    except ValueError as err:
        raise CliError(str(err)) from err
    host_options = {k[len("host_"):]: v for k, v in vars(args).items() if k.startswith("host_")}
    try:
        summary = run(args.source, settings, host=args.host, host_options=host_options, output=args.output,
                      registry=registry, progress=not args.quiet,
                      store=False if args.no_store else (args.store or True),
                      report=args.report, blur_humans=args.blur_humans, command=["deepfaune", *args.argv],
                      keep_results=False)
    except RunInterrupted as err:
        print(f"deepfaune: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunError as err:
        raise CliError(str(err)) from err
    _print_summary(summary)
    return EXIT_OK if summary.complete else EXIT_INCOMPLETE


def _print_summary(summary) -> None:
    out = sys.stderr
    tally = summary.tally
    files, n_seq = tally.files, tally.sequences
    print(f"\n{files} files, {n_seq} sequences, {len(tally.failures)} failed, {summary.skipped} skipped, "
          f"{len(tally.warned)} with warnings, "
          f"{summary.elapsed:.1f} s ({files / summary.elapsed if summary.elapsed else 0:.2f} files/s)", file=out)
    counts = summary.label_counts()
    if counts:
        print("sequences per label:", file=out)
        for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {label:<24} {n}", file=out)
    _print_listed("failures:", tally.failures, "failure", out)
    _print_listed("with warnings (they have a result):", tally.warned, "warning", out)
    if summary.results.backend_info.get("standin"):
        print("STAND-IN MODELS were used: these labels are meaningless.", file=out)
    for path in summary.written + summary.review_files:
        print(f"wrote {path}", file=out)
    if not summary.complete:
        print(f"{len(tally.failures) + summary.skipped} file(s) have no result ({len(tally.failures)} failed, "
              f"{summary.skipped} skipped; listed above): exit status {EXIT_INCOMPLETE}", file=out)


def _print_listed(title: str, entries: Sequence[tuple[str, str]], column: str, out, most: int = 20) -> None:
    """The first `most` (file, text) pairs; the table's `column` has them all."""
    if entries:
        print(title, file=out)
        for rel, text in entries[:most]:
            print(f"  {rel}: {text}", file=out)
        if len(entries) > most:
            print(f"  ... and {len(entries) - most} more (see the {column!r} column)", file=out)


def _cmd_plugins(args, registry: Registry) -> int:
    rows = []
    for kind, table in (("backend", registry.backends), ("host", registry.hosts)):
        for reg in table.values():
            rows.append({"kind": kind, "name": reg.name, "plugin": reg.plugin, "origin": reg.origin,
                         "description": str(getattr(reg.obj, "description", ""))})
    for broken in registry.broken:  # left out, with why: what its author (or the user's pip) must fix
        rows.append({"kind": "broken", "name": broken.name, "plugin": broken.name, "origin": broken.origin,
                     "description": f"not loaded: {broken.error}", "error": broken.error})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['kind']:<8} {r['name']:<12} from {r['plugin']} ({r['origin']}): {r['description']}")
    return 0


def _add_sort(sub) -> None:
    p = sub.add_parser("sort", help="copy, move or hard-link files into one folder per label")
    p.add_argument("results", type=Path, help="a result table written by `deepfaune run` (CSV or XLSX)")
    p.add_argument("--root", type=Path, default=None, help="folder the table's filenames are relative to "
                                                           "(default: the table's folder)")
    p.add_argument("--dest", type=Path, required=True, help="where to create deepfaune_<date>/<label>/ folders")
    p.add_argument("--mode", choices=("copy", "move", "link"), default="copy",
                   help="copy the files (default), move them, or make hard links (no extra space)")
    p.add_argument("--blur-humans", action="store_true", help="blur person boxes in the copies")


def _cmd_sort(args) -> int:
    from .sorting import SortError, sort_files

    try:
        report = sort_files(args.results, dest=args.dest, root=args.root, mode=args.mode, blur_humans=args.blur_humans)
    except SortError as err:
        raise CliError(str(err)) from err
    for rel, reason in report.failures:
        print(f"warning: {rel}: {reason}", file=sys.stderr)
    print(f"{report.done} files sorted into {report.folder} ({len(report.failures)} failed)")
    return 0 if not report.failures else 1


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfaune", description="DeepFaune on ONNX Runtime, inside your camera-trap tools.")
    parser.add_argument("--version", action="version", version=f"deepfaune-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.set_defaults(plugin_notes=_add_run(sub, registry))
    add_models_parser(sub)
    p = sub.add_parser("plugins", help="list registered backends and hosts and where they come from")
    p.add_argument("--json", action="store_true", help="print the list as JSON (for scripts)")
    _add_sort(sub)
    return parser


def main(argv: Sequence[str] | None = None, registry: Registry | None = None) -> int:
    try:
        registry = registry or default_registry()
    except PluginError as err:
        print(f"deepfaune: error: {err}", file=sys.stderr)
        return 1
    parser = build_parser(registry)
    for note in [b.describe() for b in registry.broken] + parser.get_default("plugin_notes"):
        print(f"deepfaune: warning: {note}; see `deepfaune plugins`", file=sys.stderr)  # once per command
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "run":
            return _cmd_run(args, registry)
        if args.command == "plugins":
            return _cmd_plugins(args, registry)
        if args.command == "models":
            return run_models_command(args)
        if args.command == "sort":
            return _cmd_sort(args)
    except (CliError, DeepfauneError) as err:
        print(f"deepfaune: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deepfaune: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
