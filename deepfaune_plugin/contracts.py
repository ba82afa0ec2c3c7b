"""What a backend and a host adapter are: the contracts plugins implement.

A *backend* turns media items into raw outputs (`RawResult`); it never decides labels.
A *host adapter* reads a manifest of media from a data manager's files and writes decisions
back into them; it never runs a model.  Both are plain objects registered through the
`register_backends` / `register_hosts` hooks.

Plugins import these names from `deepfaune_plugin.api` (the public surface, with its stability statement); the
core imports them from here, so that the api can re-export every helper without an import cycle.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from .types import AnimalDecision, ClassTable, Decision, Manifest, MediaItem, RawResult

#: Modes that run a detector (a model card lists those its models support).
MODEL_DETECTOR_MODES = ("DF", "MDS", "DFbsMDS", "DFMDS")
#: No detector: classify the boxes the host supplies (MediaItem.known_boxes), e.g. MegaDetector's.
EXISTING_DETECTIONS = "existing"
DETECTOR_MODES = (*MODEL_DETECTOR_MODES, EXISTING_DETECTIONS)


#: The most inference threads a run may ask for: beyond a few per core they only cost memory (onnxruntime
#: makes every one at once, 100000 took 4 GB before hanging); 256 is 4 threads on each of 64 cores.
MAX_THREADS = 256


@dataclass
class RunSettings:
    """Everything a user can set for a run; decisions are a pure function of raw outputs + these.

    A backend receives them in `Backend.open`/`describe`; a host finds them in `RunResults.settings`
    (after the source's own detector mode, `Manifest.detector_mode`, was applied). Out-of-range values
    raise ValueError (the command prints it and exits 1).

    Attributes:
        model_version: DeepFaune model version, e.g. "1.4" (`--model-version`).
        detector_mode: One of `DETECTOR_MODES` (`--detector`): how boxes are found ("existing": the
            host's `MediaItem.known_boxes`, no detector).
        threshold: Score (probability, 0..1) under which an animal's label is "undefined" (`--threshold`).
        maxlag: Seconds: two files of a group whose dates are at most this far apart are one sequence
            (`--maxlag`).
        lang: Language code of the labels written (`--lang`: fr, en, it, de, es...), a key of
            `ClassTable.names`.
        exclude: Species absent from the study area (labels in any language of the model, or keys): never
            chosen (`--exclude`).
        bird: Refine "bird" into 8 bird groups with the bird head (`--bird`).
        models_dir: Where the model files are, or None for the default folder (`--models-dir`).
        threads: CPU threads for inference, or None for all cores (`--threads`).
        fast: Quantised models (int8 on the CPU, fp16 on a GPU): faster, other answers (`--fast`).
        backend: The backend's registered name (`--backend`).
        scheduler: A Dask scheduler address or "local:N" (`--scheduler`): where inference runs, never
            what it gives; None: in this process.
        device: "auto", "cpu", "cuda", "directml", "coreml", "openvino" (`--device`); None:
            `$DEEPFAUNE_DEVICE`, else auto.
        every_animal: Classify every animal box, not only DeepFaune's best one (`--every-animal`): one
            `AnimalDecision` per box in `RunResults.animals`; DeepFaune's own decision is the same either way.
        drop_repeats: Set aside animal boxes that recur at one place in many images of a station or camera (a
            branch, a rock, a post: `--drop-repeats`, module `repeats`); off: DeepFaune's own answers.
        repeat_iou: With `drop_repeats`: two boxes are at the same place when their intersection over union is at
            least this (`--repeat-iou`, 0..1).
        repeat_min_images: With `drop_repeats`: a box is a repeat when at least this many images of its station
            (its own included) hold a box at its place (`--repeat-min-images`, >= 2).
        keep_features: Keep the classifier's features of each classified crop in the result store, to fit a
            head on people's labels later (`--no-features` turns it off): about 2 KiB per crop. Never changes
            an output, nor the store's key.
    """

    model_version: str = "1.4"
    detector_mode: str = "DFbsMDS"
    threshold: float = 0.8
    maxlag: float = 10.0
    lang: str = "fr"
    exclude: tuple[str, ...] = ()
    bird: bool = False
    models_dir: Path | None = None
    threads: int | None = None
    fast: bool = False  # int8 models (`deepfaune models quantize`), no onnxruntime memory arena: other answers
    backend: str = "deepfaune"
    scheduler: str | None = None  # a Dask scheduler address or "local:N": where inference runs, never what it gives
    device: str | None = None  # auto|cpu|cuda|directml|coreml|openvino; None: $DEEPFAUNE_DEVICE, else auto
    #: Classify every animal box, not only DeepFaune's best one (RunResults.animals); DeepFaune's own answer is
    #: the same either way.  Recorded only when on (report.record.recorded_settings).
    every_animal: bool = False
    drop_repeats: bool = False  # recorded (run record, review page) only when on: off records what it always did
    repeat_iou: float = 0.85  # MegaDetector's repeat detection elimination starts at the same overlap
    repeat_min_images: int = 10
    keep_features: bool = True  # the classifier's features kept in the store (`--no-features`: not)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:  # 0: every animal labelled; NaN fails here too
            raise ValueError(f"threshold must be between 0 and 1 (inclusive), got {self.threshold}")
        if not math.isfinite(self.maxlag) or self.maxlag < 0:  # inf/nan would join a whole season (or nothing)
            raise ValueError(f"maxlag must be a number of seconds >= 0, got {self.maxlag}")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:  # 100000 took 4 GB and hung
            raise ValueError(f"threads must be between 1 and {MAX_THREADS} (this computer has {os.cpu_count()} "
                             f"cores; leave it out to use them all), got {self.threads}")
        if not 0.0 < self.repeat_iou <= 1.0:  # NaN fails here too; 0 would join every box of a station
            raise ValueError(f"repeat IoU must be above 0 and at most 1, got {self.repeat_iou}")
        if isinstance(self.repeat_min_images, bool) or not isinstance(self.repeat_min_images, int) \
                or self.repeat_min_images < 2:  # 1 would set aside every animal box
            raise ValueError(f"repeat minimum images must be a whole number >= 2, got {self.repeat_min_images!r}")
        if self.detector_mode not in DETECTOR_MODES:
            raise ValueError(
                f"unknown detector mode {self.detector_mode!r}; choose one of {', '.join(DETECTOR_MODES)}"
            )


@runtime_checkable
class Predictor(Protocol):
    """A backend's loaded models, returned by `Backend.open` (any object with these members).

    Attributes:
        classes: The labels and temperatures of the classifier (`ClassTable`).
        info: What the run record keeps about the models: model version, file names and sha256, a
            "standin" flag (the run then warns that the labels are meaningless)...; JSON-serialisable.
    """

    classes: ClassTable
    info: dict[str, Any]  # model version, file names and sha256, stand-in flag...

    def predict(self, items: Iterable[MediaItem]) -> Iterator[RawResult]:
        """One `RawResult` per item, **in the items' order**, each with the item's relpath. Called once per
        chunk of whole sequences (about a thousand files) with the files the result store does not hold; a
        file that cannot be read gets `RawResult(relpath, failure=...)`, never an exception."""
        ...

    def close(self) -> None:
        """Free the models: called once, when the run ends (also when it fails)."""
        ...


@dataclass(frozen=True)
class BackendDescription:
    """What a backend will compute, known without loading its models (`Backend.describe`).

    Attributes:
        classes: The class table `open` would give.
        fingerprint: Any string that changes whenever raw outputs could change (model files and their
            hashes, detector mode, backend version...): the result store reuses a file's stored outputs
            (keyed by the file's content) only under the same fingerprint.
        info: What `Predictor.info` would hold (the run record's model information).
    """

    classes: ClassTable
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)


class Backend:
    """Base of every backend: subclass it, set `name` and `description`, implement `open`.

    A backend turns media into raw outputs (`RawResult`); it never decides labels. Defaults: `describe`
    returns None, so the run has no fingerprint and recomputes every file (no resume, no re-deciding from
    stored outputs). Return a `BackendDescription` to get both without loading models.

    Attributes:
        name: The name `--backend NAME` selects; unique among registered backends, non-empty.
        description: One line shown by `deepfaune plugins`.
    """

    name: str = ""
    description: str = ""

    def open(self, settings: RunSettings) -> Predictor:
        """Load the models for `settings`: called once per run, when the first file needs computing (not at
        all when the result store holds every file), and closed at the end (`Predictor.close`). Raise a
        `BackendError` when the models cannot run."""
        raise NotImplementedError(f"backend {self.name!r} does not implement open()")

    def describe(self, settings: RunSettings) -> BackendDescription | None:
        """What `open(settings)` would compute, without loading it; None when the backend cannot say.

        Called once at the start of a run that uses the result store (not with `--no-store`)."""
        return None


#: The core commands a host's options may join (`HostOption.commands`): `review` takes a run's options
#: because its export is a run; `evaluate` reads the source as a run does, without writing.
OPTION_COMMANDS = ("run", "review", "evaluate")


@dataclass(frozen=True)
class HostOption:
    """A command-line option a host adds to the core's commands (e.g. Timelapse's --write-ddb to `deepfaune run`).

    Option names are shared by all hosts: the first host registered with a name gets it, a later one is left
    out with a warning. Every host receives every host's options (each at its default unless given), so
    prefix yours (`--example-x`) and read only your own.

    Attributes:
        name: The long option without dashes, e.g. "write-ddb"; its value reaches `Host.read`/`write` as
            `options[dest]` ("write_ddb").
        help: One line for `deepfaune run --help`.
        flag: A boolean switch (value True when given, else `bool(default)`) rather than a value.
        default: The value when the option is not given (a value given is the string typed).
        multiple: May be given several times; the value is then a list (`default` when never given).
        commands: The commands that offer it (of `OPTION_COMMANDS`, default run and review): add "evaluate"
            for an option that changes what `read` finds, e.g. where the source keeps people's labels.
        from_record: Whether a later `review`/`evaluate` of the source may take this option's value from the
            run's record (deepfaune-run.json) when its own command line does not give it. Only for an option
            that chooses what the host writes into the source's own files (a field, a flag, a rule); never for
            one naming another file or folder, an address or the network: the record lies in a folder anyone
            may have sent. Default False.
    """

    name: str  # long option without dashes, e.g. "write-ddb"
    help: str
    flag: bool = False  # a boolean switch rather than a value
    default: Any = None
    multiple: bool = False  # may be given several times (collected in a list)
    #: The commands that offer it (of `OPTION_COMMANDS`): add "evaluate" for an option that changes what `read`
    #: finds, e.g. where the source keeps people's labels.
    commands: tuple[str, ...] = ("run", "review")
    #: A later review/evaluate may take it from the run's record (never an option naming a path or an address).
    from_record: bool = False

    def __post_init__(self) -> None:
        unknown = [c for c in self.commands if c not in OPTION_COMMANDS] if not isinstance(self.commands, str) \
            else [self.commands]
        if unknown:  # a typo would hide the option silently: refused when the plugin loads, with the reason
            raise ValueError(f"HostOption {self.name!r}: commands must be a tuple of {', '.join(OPTION_COMMANDS)}; "
                             f"got {self.commands!r}")

    @property
    def dest(self) -> str:
        """The key of the option's value in the `options` mapping: `name` with "-" replaced by "_"."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Command:
    """A command a plugin adds to `deepfaune` (`register_commands`): `deepfaune NAME ...`.

    `add_arguments(parser)` adds its arguments to its own argparse parser; `run(args)` runs it with the parsed
    `argparse.Namespace` and returns the exit status. A `DeepfauneError` it raises is printed as one line
    (exit status 1). A name the core or another plugin already has is left out, with a warning.

    Attributes:
        name: The subcommand's name (`deepfaune NAME`); not one the core or another plugin has.
        help: One line for `deepfaune --help`.
        run: Called with the parsed `argparse.Namespace`; returns the exit status.
        add_arguments: Adds the command's arguments to its own argparse parser, or None for none.
        description: The longer text of `deepfaune NAME --help` ("" : `help`).
    """

    name: str
    help: str
    run: Callable[[Any], int]
    add_arguments: Callable[[Any], None] | None = None
    description: str = ""


#: What every file a run on stand-in models writes says about its labels (`RunResults.standin`): once the run's
#: log is gone, a package or table of random labels must still not look like DeepFaune's.
STANDIN_MARK = "STAND-IN MODELS, random weights: the labels are meaningless"
#: The column a table of a stand-in run gets, and its value in every row.  Only a stand-in run's tables have it:
#: a table of real models stays byte for byte what it was (and what DeepFaune writes).
STANDIN_COLUMN, STANDIN_VALUE = "models", "stand-in"
#: The column a table of a run decided by an adapted head gets (`RunResults.head`, `run --adapted NAME`), the
#: head's name in every row.  Only those tables have it: without --adapted a table stays byte for byte as before.
HEAD_COLUMN = "head"


@dataclass
class RunResults:
    """What a run produced: given to `Host.write` once, or to a `ResultWriter` batch by batch.

    Attributes:
        settings: The run's settings (the source's detector mode applied).
        classes: The classifier's class table.
        raw: relpath -> the file's raw output (its boxes, `width`/`height`: what `Decision.box` is measured
            in). In `Host.write`: every file of the run; in `ResultWriter.add`: the batch's files; in
            `ResultWriter.close`: possibly empty (a command-line run keeps nothing it has handed over).
        decisions: One `Decision` per file, ordered by (seqnum, relpath), with the same scope as `raw`.
        backend_info: The backend's `Predictor.info`, plus "computed" and "reused" file counts at the end.
        output: The user's `--output` path, or None (also in the host's options as "output").
        started: When the run started (local time, naive).
        finished: When the run finished; None in the batches given to `ResultWriter.add`.
        animals: With `--every-animal`, one `AnimalDecision` per animal box (label, score, box in pixels, the
            species' MaxN and images in its sequence), in the decisions' order then the boxes'; None when off.
        head: The adapted head that decided (`deepfaune run --adapted NAME`, issue 34), or None: DeepFaune's own.
            Writers that name the classifier (Camtrap DP classifiedBy, the run record) name it too.
    """

    settings: RunSettings
    classes: ClassTable
    raw: Mapping[str, RawResult]
    decisions: list[Decision]
    backend_info: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None
    started: datetime | None = None
    finished: datetime | None = None
    #: `--every-animal`: one decision per animal box, in the decisions' order then the boxes'; None when off.
    animals: list[AnimalDecision] | None = None
    #: `--adapted NAME`: the site head that decided instead of DeepFaune's; None: DeepFaune's own head.
    head: str | None = None

    @property
    def standin(self) -> bool:
        """True when the models had random weights (`deepfaune models stand-in`; the backend says so in its info,
        from the installed models' manifest): the one fact every writer reads to mark its files (STANDIN_MARK)."""
        return bool(self.backend_info.get("standin"))


@runtime_checkable
class ResultWriter(Protocol):
    """A host's outputs written as the run goes, for hosts that can (optional `Host.open_writer`).

    `add` receives the results of whole sequences, in DeepFaune's order (sequence numbers rising), so a
    season is never held in memory; `close` finishes the outputs (nothing may replace the user's files
    before it) and returns the files written; `abort` leaves every previous output as it was.

    Attributes:
        target: The main output file, known before the first result: the review page
            (deepfaune-report.html, its thumbnails in `.deepfaune-thumbs/`) and the run record
            (deepfaune-run.json) are written in its folder.
    """

    target: Path

    def add(self, batch: RunResults) -> None:
        """Take a batch of whole sequences (its `decisions` and `raw`); write it to a staged file, never to
        the user's file yet."""
        ...

    def close(self, results: RunResults) -> list[Path]:
        """Every file has been added: put the outputs in place (atomically) and return the files written.
        `results` has the run's end (`finished`, backend info); its `decisions` may be empty."""
        ...

    def abort(self) -> None:
        """The run failed or was interrupted: discard what was staged; the user's files stay as they were."""
        ...


class Host:
    """Base of every host adapter: subclass it, set `name` and `description`, implement `detect`, `read` and
    either `write` (results given once, at the end) or `open_writer` (results given as they come).

    A host adapter reads a manifest of media from a data manager's files and writes decisions back into
    them; it never runs a model. Defaults: no options; `priority` 10; `open_writer` returns None, so the run
    collects every result and calls `write` at the end; `release` does nothing.

    Attributes:
        name: The name `--host NAME` selects; unique among registered hosts, non-empty.
        description: One line shown by `deepfaune plugins`.
        options: Options this host adds to `deepfaune run` (`HostOption`).
        priority: Among the hosts whose `detect(source)` is true, `--host auto` takes the one with the
            highest priority (folder 0, camtrapR and Timelapse 10, Camtrap DP 20); a tie is refused.
        labels_held: Where this host's sources keep people's labels (`Manifest.human_labels`), said by
            `deepfaune evaluate` when a source holds none.
    """

    name: str = ""
    description: str = ""
    #: Options this host adds to `deepfaune run` (and the commands each names); their values reach read/write
    #: under their `dest` names.
    options: Sequence[HostOption] = ()
    priority: int = 10
    #: Where this host's sources keep people's labels (`Manifest.human_labels`), said when a source holds none
    #: (`deepfaune evaluate`), e.g. "name the data field holding them with --labels-field".
    labels_held: str = "its host reads none"

    def detect(self, source: Path) -> bool:
        """True when `source` (a file or folder the user named, which exists) is this host's kind of data.

        Used by `--host auto` on every host: keep it cheap (look for a marker file). An exception counts as
        False."""
        return False

    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        """The media of `source`, as a `Manifest`.

        `options` holds every host's options under their `dest` names and "output" (the --output path or
        None). Entries you cannot use go to `Manifest.problems`; a source you cannot use at all raises a
        `HostError` naming the file (an OSError or ValueError is reported as "cannot read as a NAME source")."""
        raise NotImplementedError(f"host {self.name!r} does not implement read()")

    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        """Write results back (to `options["output"]` when the user gave --output); return the files written.

        Called once, after every file was decided, with the manifest `read` returned and every file's
        decision. Write atomically (`atomic_output`): an exception leaves the user's files as they were.
        The review page and run record go in the folder of the first file returned."""
        raise NotImplementedError(f"host {self.name!r} does not implement write()")

    def open_writer(self, manifest: Manifest, options: Mapping[str, Any]) -> ResultWriter | None:
        """A writer that takes results as they come, or None to have them all given to `write` at the end.

        With a lazily listed manifest (`Manifest.from_blocks`) and a writer, a run holds one block of files
        at a time. A `HostError` raised here (an output the host cannot write) stops the run before any model runs.
        """
        return None

    def release(self, manifest: Manifest) -> None:
        """The source was read but will not be written (`deepfaune evaluate`, `deepfaune review`): give back
        what `read` holds for its write, e.g. a lock on the user's data. Default: nothing is held.

        Not called by `deepfaune run`, which ends with `write` (or the writer's `close`/`abort`)."""

    def labels_unwritten(self, options: Mapping[str, Any]) -> str | None:
        """Why a write with `options` would put none of people's labels (`deepfaune review`) where the person's
        tool shows them, saying which option to add; None when it would (the default). Write back refuses then."""
        return None


class _PlainBackend(Backend):
    """A backend registered as a plain object rather than a `Backend` subclass (still accepted in 0.x): the
    defaults it lacks come from `Backend`; everything else is its own."""

    def __init__(self, plain: Any):
        self.plain = plain
        self.name = plain.name
        self.description = str(getattr(plain, "description", ""))

    def open(self, settings: RunSettings) -> Predictor:
        return self.plain.open(settings)

    def describe(self, settings: RunSettings) -> BackendDescription | None:
        describe = getattr(self.plain, "describe", None)
        return describe(settings) if describe is not None else None

    def __getattr__(self, attr: str) -> Any:
        return _forward(self, attr)


class _PlainHost(Host):
    """A host registered as a plain object rather than a `Host` subclass (still accepted in 0.x)."""

    def __init__(self, plain: Any):
        self.plain = plain
        self.name = plain.name
        self.description = str(getattr(plain, "description", ""))
        self.options = getattr(plain, "options", ())
        self.priority = getattr(plain, "priority", Host.priority)
        self.labels_held = str(getattr(plain, "labels_held", Host.labels_held))

    def detect(self, source: Path) -> bool:
        return self.plain.detect(source)

    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        return self.plain.read(source, options)

    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        return self.plain.write(manifest, results, options)

    def open_writer(self, manifest: Manifest, options: Mapping[str, Any]) -> ResultWriter | None:
        opener = getattr(self.plain, "open_writer", None)
        return opener(manifest, options) if opener is not None else None

    def release(self, manifest: Manifest) -> None:
        release = getattr(self.plain, "release", None)
        if release is not None:
            release(manifest)

    def labels_unwritten(self, options: Mapping[str, Any]) -> str | None:
        unwritten = getattr(self.plain, "labels_unwritten", None)
        return unwritten(options) if unwritten is not None else None

    def __getattr__(self, attr: str) -> Any:
        return _forward(self, attr)


def _forward(wrapper: Any, attr: str) -> Any:
    """What the wrapped plain object has beyond the contract; an AttributeError (not a KeyError) while the
    wrapper itself is being built or unpickled (Dask sends backends to its workers)."""
    if "plain" not in wrapper.__dict__:
        raise AttributeError(attr)
    return getattr(wrapper.__dict__["plain"], attr)


def adopt_backend(obj: Any) -> Backend:
    """`obj` as a `Backend`: itself when it subclasses it, else wrapped with the documented defaults."""
    return obj if isinstance(obj, Backend) else _PlainBackend(obj)


def adopt_host(obj: Any) -> Host:
    """`obj` as a `Host`: itself when it subclasses it, else wrapped with the documented defaults."""
    return obj if isinstance(obj, Host) else _PlainHost(obj)
