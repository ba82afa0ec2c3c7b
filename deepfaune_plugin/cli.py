"""The `deepfaune` command: run, models, store, plugins, sort."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .api import DETECTOR_MODES, RunSettings
from .engine.providers import DEVICES, choose_device, requested_device, runtime_install
from .errors import DeepfauneError
from .evaluate_cli import add_evaluate_parser, run_evaluate_command
from .review.cli import add_review_parser, run_review_command
from .models.cli import MODELS_DIR_HELP, add_models_parser, run_models_command
from .store_cli import add_store_parser, run_store_command
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
    return add_run_options(p, registry)


def add_run_options(p: argparse.ArgumentParser, registry: Registry) -> list[str]:
    """The options of a run (settings, outputs, every host's options): `deepfaune review` takes the same, so
    that its export writes what `deepfaune run` would."""
    p.add_argument("source", type=Path, help="a folder, a Timelapse root, a camtrapR tree or record table, a Camtrap DP package")
    p.add_argument("--host", default="auto", help="data manager of SOURCE (default: auto-detect); see `deepfaune plugins`")
    p.add_argument("--backend", default="deepfaune", help="classification backend (default: deepfaune)")
    p.add_argument("--model-version", default="1.4", help="DeepFaune model version (default: 1.4)")
    p.add_argument("--detector", default="DFbsMDS", choices=DETECTOR_MODES,
                   help="detector mode (default DFbsMDS: DeepFaune's detector, MegaDetector when it finds nothing; "
                        "existing: no detector, classify the boxes the source already holds, e.g. Timelapse's "
                        "--use-existing-detections)")
    p.add_argument("--threshold", type=float, default=0.8, help="score under which a label is 'undefined', 0 to 1 (default 0.8; 0 labels every animal)")
    p.add_argument("--maxlag", type=float, default=10, help="max seconds between images of a sequence (default 10)")
    p.add_argument("--lang", default="fr", help="label language: fr, en, it, de, es (+ no, se, pt for 1.5)")
    p.add_argument("--exclude", action="append", metavar="SPECIES",
                   help="species absent from the study area (repeat, or comma-separated)")
    p.add_argument("--bird", dest="bird", action="store_true", default=False, help="refine 'bird' into 8 bird groups")
    p.add_argument("--no-bird", dest="bird", action="store_false", help="keep 'bird' as one label (the default)")
    p.add_argument("--every-animal", action="store_true",
                   help="also classify every animal box, not only DeepFaune's best one: one row per animal (a "
                        "folder's NAME-animals.csv beside its table); DeepFaune's own columns are unchanged")
    p.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference (default: all cores)")
    p.add_argument("--device", default=None, metavar="DEVICE", choices=DEVICES,
                   help="where the models run: auto (default, or $DEEPFAUNE_DEVICE: a GPU when the installed "
                        "onnxruntime offers one, else the CPU), cpu, cuda, directml, coreml, openvino; "
                        "see docs/devices.md")
    p.add_argument("--fast", action="store_true",
                   help="int8 models on the CPU (about 1.5x faster), fp16 on a GPU (both made by `deepfaune models "
                        "quantize`): answers differ from DeepFaune's (speed and agreement in benchmarks/RESULTS.md)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run inference on a Dask cluster: a scheduler address (tcp://host:8786) or local:N for N "
                        "worker processes on this computer; needs pip install 'deepfaune-plugin[dask]' "
                        "(see docs/cluster.md)")
    p.add_argument("--output", "-o", type=Path, default=None, help="output file (.csv or .xlsx for a folder)")
    p.add_argument("--store", type=Path, default=None,
                   help="result store (SQLite) that makes runs resumable and re-decisions instant "
                        "(default: one per user in the user cache, shared by all sources; see `deepfaune store`)")
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
            options = list(reg.obj.options)
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

    settings, host_options = run_settings(args)
    conflict = runtime_install().conflict
    if conflict:
        print(f"deepfaune: warning: {conflict}", file=sys.stderr)
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


def run_settings(args) -> tuple[RunSettings, dict]:
    """The settings and host options of a run's command line (`add_run_options`)."""
    try:
        settings = RunSettings(
            model_version=args.model_version, detector_mode=args.detector, threshold=args.threshold,
            maxlag=args.maxlag, lang=args.lang, exclude=_split_list(args.exclude), bird=args.bird,
            models_dir=args.models_dir, threads=args.threads, fast=args.fast, backend=args.backend,
            scheduler=args.scheduler, device=args.device, every_animal=getattr(args, "every_animal", False),
        )
        if not args.scheduler:  # a device asked by name and not here: refused before any file is read
            choose_device(requested_device(args.device))
    except ValueError as err:
        raise CliError(str(err)) from err
    return settings, {k[len("host_"):]: v for k, v in vars(args).items() if k.startswith("host_")}


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
                         "description": str(reg.obj.description)})
    for broken in registry.broken:  # left out, with why: what its author (or the user's pip) must fix
        rows.append({"kind": "broken", "name": broken.name, "plugin": broken.name, "origin": broken.origin,
                     "description": f"not loaded: {broken.error}", "error": broken.error})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['kind']:<8} {r['name']:<12} from {r['plugin']} ({r['origin']}): {r['description']}")
        runtime = runtime_install()
        print(f"runtime  {runtime.describe()}")
    runtime = runtime_install()
    if runtime.conflict:
        print(f"deepfaune: warning: {runtime.conflict}", file=sys.stderr)
    return 0


def _add_sort(sub) -> None:
    p = sub.add_parser("sort", help="copy, move or hard-link files into one folder per label",
                       description="Place the files of a result table into DEST/deepfaune_<date>/<label>/, keeping "
                                   "their station/camera sub-folders, and write the mapping deepfaune-sort.csv "
                                   "there (source -> destination) that --undo reads.")
    p.add_argument("results", type=Path, nargs="?", help="a result table written by `deepfaune run` (CSV or XLSX)")
    p.add_argument("--root", type=Path, default=None, help="folder the table's filenames are relative to "
                                                           "(default: the table's folder, else the source named by "
                                                           "the run record written beside the table for it)")
    p.add_argument("--dest", type=Path, default=None, help="where to create deepfaune_<date>/<label>/ folders")
    p.add_argument("--mode", choices=("copy", "move", "link"), default="copy",
                   help="copy (default), move, or hard-link the files")
    p.add_argument("--blur-humans", action="store_true", help="blur person boxes in the copies")
    p.add_argument("--flat", action="store_true",
                   help="DeepFaune's old layout: <label>/<file name> (clashes renamed name_2.ext), no sub-folders")
    p.add_argument("--skip-missing", action="store_true",
                   help="sort the files found when some of the table's files are not under the root (default: stop)")
    p.add_argument("--undo", type=Path, metavar="MAPPING", default=None,
                   help="put back what a sort did, from its deepfaune-sort.csv (or its folder): moved files return, "
                        "copies and links it made are removed (never a file changed since); only a mapping a "
                        "sort of yours wrote, unchanged, where it wrote it, every row checked first")


def _cmd_sort(args) -> int:
    from .sorting import SortError, sort_files, undo_sort

    if args.undo is not None:
        if args.results is not None or args.dest is not None:
            raise CliError("--undo MAPPING takes no result table nor --dest")
        try:
            undone = undo_sort(args.undo)
        except SortError as err:
            raise CliError(str(err)) from err
        for dest, reason in undone.kept:
            print(f"warning: {dest}: {reason}", file=sys.stderr)
        print(f"{undone.restored} files moved back, {undone.removed} copies or links removed"
              + (f", {undone.already} already undone" if undone.already else "")
              + (f"; {len(undone.kept)} kept in {undone.folder}" if undone.kept else ""))
        return 0 if not undone.kept else 1
    if args.results is None or args.dest is None:
        raise CliError("sort needs a result table and --dest (or --undo MAPPING)")
    try:
        report = sort_files(args.results, dest=args.dest, root=args.root, mode=args.mode,
                            blur_humans=args.blur_humans, flat=args.flat, skip_missing=args.skip_missing)
    except SortError as err:
        raise CliError(str(err)) from err
    print(f"root: {report.root} ({report.root_reason})")
    for rel, reason in report.failures[:20]:
        print(f"warning: {rel}: {reason}", file=sys.stderr)
    if len(report.failures) > 20:
        print(f"warning: ... and {len(report.failures) - 20} more not sorted", file=sys.stderr)
    print(f"{report.done} files sorted into {report.folder} ({len(report.failures)} not sorted); "
          f"undo with: deepfaune sort --undo {report.mapping}")
    return 0 if not report.failures else 1


def _version_text() -> str:
    """The version, and the runtime that will run the models: what a bug report needs first."""
    runtime = runtime_install()
    return "\n".join(line for line in (f"deepfaune-plugin {__version__}", runtime.describe(),
                                        runtime.conflict and f"warning: {runtime.conflict}") if line)


class _Version(argparse.Action):
    """argparse's own version action rewraps the text into one paragraph; this prints it line by line."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_text())
        parser.exit()


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfaune", description="DeepFaune on ONNX Runtime, inside your camera-trap tools.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the version and the onnxruntime that runs the models, and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.set_defaults(plugin_notes=_add_run(sub, registry))
    add_models_parser(sub)
    add_store_parser(sub)
    add_evaluate_parser(sub)
    add_review_parser(sub, registry)
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
        if args.command == "store":
            return run_store_command(args)
        if args.command == "evaluate":
            return run_evaluate_command(args, registry)
        if args.command == "review":
            return run_review_command(args, registry)
    except (CliError, DeepfauneError) as err:
        print(f"deepfaune: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deepfaune: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
