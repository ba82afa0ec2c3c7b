"""What the commands share: exit statuses, the options of a run (`run` and `review` take the same), the hosts'
options for any core command, and the summary a run prints.

Here rather than in `cli` so that `evaluate_cli` and `review.cli` need not import the module that imports them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .api import DETECTOR_MODES, MAX_THREADS, RunSettings
from .engine.providers import DEVICES, choose_device, requested_device
from .errors import DeepfauneError
from .models.cli import MODELS_DIR_HELP
from .plugins import Registry

#: The defaults the parsers show and use: RunSettings' own, written once there.
DEFAULTS = RunSettings()


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
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C): run the same command again to resume (with --no-store it starts
       again from the first file: nothing was kept)"""


def split_list(values: Sequence[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ():
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return tuple(out)


def add_run_options(p: argparse.ArgumentParser, registry: Registry, command: str = "run") -> list[str]:
    """The options of a run (settings, outputs, the hosts' options for `command`): `deepfaune review` takes the
    same, so that its export writes what `deepfaune run` would."""
    p.add_argument("source", type=Path, help=f"a folder, or the data of a host: {', '.join(registry.hosts)} "
                                              "(see `deepfaune plugins`)")
    p.add_argument("--host", default="auto", help="data manager of SOURCE (default: auto-detect); see `deepfaune plugins`")
    p.add_argument("--backend", default=DEFAULTS.backend, help=f"classification backend (default: {DEFAULTS.backend})")
    p.add_argument("--model-version", default=DEFAULTS.model_version,
                   help=f"DeepFaune model version (default: {DEFAULTS.model_version})")
    p.add_argument("--detector", default=DEFAULTS.detector_mode, choices=DETECTOR_MODES,
                   help=f"detector mode (default {DEFAULTS.detector_mode}: DeepFaune's detector, MegaDetector when "
                        "it finds nothing; existing: no detector, classify the boxes the source already holds, e.g. "
                        "with a host's --use-existing-detections)")
    p.add_argument("--threshold", type=float, default=DEFAULTS.threshold, help=f"score under which a label is 'undefined', 0 to 1 (default {DEFAULTS.threshold:g}; 0 labels every animal)")
    p.add_argument("--maxlag", type=float, default=DEFAULTS.maxlag, help=f"max seconds between images of a sequence (default {DEFAULTS.maxlag:g})")
    p.add_argument("--lang", default=DEFAULTS.lang, help="label language: fr, en, it, de, es (+ no, se, pt for 1.5)")
    p.add_argument("--exclude", action="append", metavar="SPECIES",
                   help="species absent from the study area (repeat, or comma-separated)")
    p.add_argument("--bird", dest="bird", action="store_true", default=DEFAULTS.bird, help="refine 'bird' into 8 bird groups")
    p.add_argument("--no-bird", dest="bird", action="store_false", help="keep 'bird' as one label (the default)")
    p.add_argument("--every-animal", action="store_true",
                   help="also classify every animal box, not only DeepFaune's best one: one row per animal (a "
                        "folder's NAME-animals.csv beside its table); DeepFaune's own columns are unchanged")
    p.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    p.add_argument("--threads", type=int, default=None,
                   help=f"CPU threads for inference, 1 to {MAX_THREADS} (default: all cores)")
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
    p.add_argument("--drop-repeats", action="store_true",
                   help="set aside animal boxes that recur at one place in many images of a station (a branch, a "
                        "rock, a post): they no longer count for the image's label and count; the `warning` column "
                        "and the review page say which (see docs/report.md)")
    p.add_argument("--repeat-iou", type=float, default=DEFAULTS.repeat_iou, metavar="IOU",
                   help=f"with --drop-repeats: boxes at least this overlapping are at the same place, above 0 to 1 "
                        f"(default {DEFAULTS.repeat_iou:g})")
    p.add_argument("--repeat-min-images", type=int, default=DEFAULTS.repeat_min_images, metavar="N",
                   help=f"with --drop-repeats: a box is a repeat when N images of its station (its own included) "
                        f"have a box at its place, N >= 2 (default {DEFAULTS.repeat_min_images})")
    p.add_argument("--output", "-o", type=Path, default=None, help="output file (.csv or .xlsx for a folder)")
    p.add_argument("--store", type=Path, default=None,
                   help="result store (SQLite) that makes runs resumable and re-decisions instant "
                        "(default: one per user in the user cache, shared by all sources; see `deepfaune store`)")
    p.add_argument("--no-store", action="store_true", help="keep nothing between runs")
    p.add_argument("--no-features", dest="keep_features", action="store_false",
                   help="do not keep the classifier's features (about 2 KiB per classified image) in the result "
                        "store; they let a head fitted on people's labels re-decide without running a model")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write deepfaune-report.html (the run record deepfaune-run.json is always written)")
    p.add_argument("--blur-humans", action="store_true", help="blur people in the report's thumbnails")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return add_host_options(p, registry, command)


def add_host_options(p: argparse.ArgumentParser, registry: Registry, command: str) -> list[str]:
    """Every host's options that join `command` (`HostOption.commands`), as `host_<dest>`: the hosts bring their
    own options, the core names none. Returns what was left out of a plugin's options, and why."""
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
                if command not in getattr(opt, "commands", ("run", "review")) or opt.name in seen:
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


def host_options(args: argparse.Namespace) -> dict:
    """The values of the hosts' options (`add_host_options`), by their `dest` names."""
    return {k[len("host_"):]: v for k, v in vars(args).items() if k.startswith("host_")}


def run_settings(args) -> tuple[RunSettings, dict]:
    """The settings and host options of a run's command line (`add_run_options`)."""
    try:
        settings = RunSettings(
            model_version=args.model_version, detector_mode=args.detector, threshold=args.threshold,
            maxlag=args.maxlag, lang=args.lang, exclude=split_list(args.exclude), bird=args.bird,
            models_dir=args.models_dir, threads=args.threads, fast=args.fast, backend=args.backend,
            scheduler=args.scheduler, device=args.device, every_animal=getattr(args, "every_animal", False),
            drop_repeats=args.drop_repeats, repeat_iou=args.repeat_iou, repeat_min_images=args.repeat_min_images,
            keep_features=args.keep_features,
        )
        if not args.scheduler:  # a device asked by name and not here: refused before any file is read
            choose_device(requested_device(args.device))
    except ValueError as err:
        raise CliError(str(err)) from err
    return settings, host_options(args)


def print_summary(summary) -> None:
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
    print_listed("failures:", tally.failures, "failure", out)
    print_listed("with warnings (they have a result):", tally.warned, "warning", out)
    if summary.results.standin:
        print("STAND-IN MODELS were used: these labels are meaningless.", file=out)
    for path in summary.written + summary.review_files:
        print(f"wrote {path}", file=out)
    if not summary.complete:
        print(f"{len(tally.failures) + summary.skipped} file(s) have no result ({len(tally.failures)} failed, "
              f"{summary.skipped} skipped; listed above): exit status {EXIT_INCOMPLETE}", file=out)


def print_listed(title: str, entries: Sequence[tuple[str, str]], column: str, out, most: int = 20) -> None:
    """The first `most` (file, text) pairs; the table's `column` has them all."""
    if entries:
        print(title, file=out)
        for rel, text in entries[:most]:
            print(f"  {rel}: {text}", file=out)
        if len(entries) > most:
            print(f"  ... and {len(entries) - most} more (see the {column!r} column)", file=out)
