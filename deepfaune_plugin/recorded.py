"""The options of the run that made a source's results, read back from its record (deepfaune-run.json).

`deepfaune review`, its `--export` and `deepfaune evaluate` work on what a run left: with other settings they
find other stored outputs, and an export without the run's host options writes other files (a Timelapse
export without the run's --write-ddb puts none of the labels into the .ddb). So they take the run's options
by default; an option given on their own command line wins. The record is a file in the user's folder:
read with a size limit, used only when it names this source, its command parsed as `deepfaune run` parses it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .plugins import Registry

MAX_RECORD = 16 << 20  # a record lists every failure and output: 16 MiB is far past a real one
#: What a later command decides for itself, and what a record (a file in a folder anyone may have sent) never
#: chooses: where outputs, stores and models are, and where inference is sent. A host's options are taken only
#: when the host says so (`HostOption.from_record`).
NOT_TAKEN = frozenset({"source", "quiet", "argv", "command", "output", "store", "no_store", "models_dir",
                       "scheduler"})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # a recorded command that no longer parses is ignored, not an exit
        raise ValueError(message)


def _run_parser(registry: Registry) -> _Parser:
    from .cli_shared import add_run_options

    parser = _Parser(prog="deepfaune run", add_help=False)
    add_run_options(parser, registry)
    return parser


def _given(argv: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """{dest: its tokens in `argv`} of the options named there (exactly, or by an unambiguous prefix, as argparse
    allows); a recorded command's tokens go on into the record of the command that took them."""
    actions = {s: a for a in parser._actions for s in a.option_strings}
    out: dict[str, list[str]] = {}
    tokens = list(argv)
    i = 0
    while i < len(tokens) and tokens[i] != "--":
        token, i = tokens[i], i + 1
        if not token.startswith("-") or token == "-":
            continue
        name = token.split("=", 1)[0]
        matches = [name] if name in actions else [s for s in actions if s.startswith(name) and name.startswith("--")]
        if len(matches) != 1:
            continue
        action = actions[matches[0]]
        taken = [token]
        if "=" not in token and action.nargs != 0 and i < len(tokens):
            taken.append(tokens[i])
            i += 1
        out.setdefault(action.dest, []).extend(taken)
    return out


def record_of(source: Path, output: Path | None) -> Path | None:
    """Where the run of `source` (with `output`) left its record: beside its output, else in the source."""
    from .report import report_names

    name = report_names(output)[1]
    folders = [Path(output).parent] if output is not None else []
    folders.append(source if source.is_dir() else source.parent)
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    return None


def run_options(source: Path, output: Path | None,
                registry: Registry) -> tuple[Path | None, dict[str, tuple[Any, list[str]]]]:
    """(the record, {dest: (value, its tokens)} of every option its command gave); (None, {}) when no usable
    record names `source` (none is no error: the run may predate records)."""
    path = record_of(source, output)
    if path is None:
        return None, {}
    try:
        if path.stat().st_size > MAX_RECORD:
            raise ValueError(f"over {MAX_RECORD} bytes")
        record = json.loads(path.read_text(encoding="utf-8"))
        command = record.get("command") if isinstance(record, dict) else None
        if command is None:
            return None, {}  # a run made through the Python API: no command line to take options from
        if not (isinstance(command, list) and 2 < len(command) <= 1000 and all(isinstance(c, str) for c in command)
                and command[1] in ("run", "review")):
            raise ValueError("no `deepfaune run` command in it")
        if record.get("source") != str(source.resolve()):
            return None, {}  # another source's record in the same folder
        parser = _run_parser(registry)
        parsed, _ = parser.parse_known_args(command[2:])
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(f"{path}: cannot read the run's options from it ({err}); give them on the command line "
                         "or remove the file") from None
    given = _given(command[2:], parser)
    hosts = {f"host_{o.dest}": o.from_record for reg in registry.hosts.values() for o in reg.obj.options}
    return path, {dest: (getattr(parsed, dest), tokens) for dest, tokens in sorted(given.items())
                  if dest not in NOT_TAKEN and hosts.get(dest, not dest.startswith("host_"))}


def take_run_options(args: argparse.Namespace, registry: Registry, skip: Iterable[str] = (),
                     log: Callable[[str], None] | None = None) -> list[str]:
    """Give each option of `args` its value in the run's record unless this command line named it (or it is in
    `skip`), and say which it took. Returns their tokens, for the record of this command (so that a record
    written by a review's export still holds the run's options)."""
    skip = set(skip)
    output = None if "output" in skip else getattr(args, "output", None)  # evaluate's --output is its own
    path, recorded = run_options(args.source, output, registry)
    given = set(_given(list(getattr(args, "argv", []))[1:], _run_parser(registry))) | skip
    taken: list[str] = []
    names = []
    for dest, (value, tokens) in recorded.items():
        if dest in given or not hasattr(args, dest):
            continue
        if isinstance(value, Path) and not value.is_absolute():
            continue  # relative to where the run was started, which the record does not say
        setattr(args, dest, value)
        taken.extend(tokens)
        names.append(f"{dest.removeprefix('host_')}={value}")
    if names and log is not None:
        log(f"options of the run recorded in {path} (an option given here wins): {', '.join(names)}")
    return taken
