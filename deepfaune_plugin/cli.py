"""The `deepfaune` command: run, models, store, evaluate, adapt, review, plugins, sort, and the plugins' own commands."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .cli_shared import (EXIT_CODES_HELP, EXIT_ERROR, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,  # noqa: F401
                         CliError, add_run_options, print_listed, print_summary, run_settings, split_list)
from .engine.providers import runtime_install
from .errors import DeepfauneError
from .adapt_cli import add_adapt_parser, run_adapt_command
from .evaluate_cli import add_evaluate_parser, run_evaluate_command
from .review.cli import add_review_parser, run_review_command
from .models.cli import add_models_parser, run_models_command
from .store_cli import add_store_parser, run_store_command
from .plugins import PluginError, Registry, default_registry

#: The names these helpers had here before `cli_shared` (kept for callers of 0.x).
_split_list, _print_summary, _print_listed = split_list, print_summary, print_listed
#: The core's own commands: a plugin's command of the same name is left out.
CORE_COMMANDS = ("run", "models", "store", "evaluate", "review", "plugins", "sort", "adapt")


def _add_run(sub, registry: Registry) -> list[str]:
    """The run parser, with every host's options; returns what was left out of a plugin's options, and why."""
    p = sub.add_parser("run", help="classify the media of a source and write the results back into it",
                       description="Classify every image of SOURCE with DeepFaune and write the results where the "
                                   "source's data manager expects them.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    notes = add_run_options(p, registry)
    p.add_argument("--adapted", metavar="NAME", default=None,
                   help="decide with the site head NAME made by `deepfaune adapt` (from the features in the result "
                        "store: files already computed run no model); the outputs name it. Default: DeepFaune's head")
    return notes


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
                      keep_results=False, adapted=args.adapted)
    except RunInterrupted as err:
        print(f"deepfaune: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RunError as err:
        raise CliError(str(err)) from err
    print_summary(summary)
    return EXIT_OK if summary.complete else EXIT_INCOMPLETE


def _cmd_plugins(args, registry: Registry) -> int:
    rows = []
    for kind, table in (("backend", registry.backends), ("host", registry.hosts), ("command", registry.commands)):
        for reg in table.values():
            rows.append({"kind": kind, "name": reg.name, "plugin": reg.plugin, "origin": reg.origin,
                         "description": str(reg.obj.help if kind == "command" else reg.obj.description)})
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
    notes = _add_run(sub, registry)
    add_models_parser(sub)
    add_store_parser(sub)
    notes += add_evaluate_parser(sub, registry)
    notes += add_adapt_parser(sub, registry)
    add_review_parser(sub, registry)
    p = sub.add_parser("plugins", help="list registered backends, hosts and commands and where they come from")
    p.add_argument("--json", action="store_true", help="print the list as JSON (for scripts)")
    _add_sort(sub)
    parser.set_defaults(plugin_notes=notes + _add_plugin_commands(sub, registry))
    return parser


def _add_plugin_commands(sub, registry: Registry) -> list[str]:
    """A parser for each plugin's command (`register_commands`); returns what was left out, and why."""
    left_out: list[str] = []
    for reg in registry.commands.values():
        command = reg.obj
        if reg.name in CORE_COMMANDS:
            left_out.append(f"command {reg.name!r} of plugin {reg.plugin!r} ({reg.origin}) left out: "
                            "deepfaune has a command of that name")
            continue
        p = sub.add_parser(reg.name, help=f"[{reg.plugin}] {command.help}", description=command.description or None)
        p.set_defaults(plugin_command=command)
        try:
            if command.add_arguments is not None:
                command.add_arguments(p)
        except Exception as err:  # someone else's code: the rest of the tool still works
            left_out.append(f"command {reg.name!r} of plugin {reg.plugin!r} ({reg.origin}) is unusable ({err})")
            p.set_defaults(plugin_command=None, plugin_unusable=left_out[-1])
    return left_out


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
        if getattr(args, "plugin_unusable", None):
            raise CliError(args.plugin_unusable)
        if getattr(args, "plugin_command", None) is not None:
            return args.plugin_command.run(args)
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
        if args.command == "adapt":
            return run_adapt_command(args, registry)
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
