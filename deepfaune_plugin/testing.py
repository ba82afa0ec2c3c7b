"""Test helpers for plugin authors: run a host or backend end to end through the real command, without models.

Shipped with the package (as datasette and llm ship theirs) so that an outside plugin's tests need nothing of
ours beyond `deepfaune_plugin.api` and this module. Covered by the API stability statement in `api`.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .api import ANIMAL, PERSON, VEHICLE, AnimalLogits, Backend, BackendDescription, Detection, MediaItem, RawResult, \
    RunSettings
from .models.cards import load_card
from .plugins import Registry, build_registry, new_plugin_manager

#: What a `LogitsBackend` answers for a file: a class's logits (an animal), a list of them (several animals, one
#: box each), or one of these words.
EMPTY, HUMAN, VEHICLE_WORD = "empty", "person", "vehicle"


def _several(outcome: Any) -> bool:
    """A list of logits lists (several animals), not one list of logits."""
    return isinstance(outcome, (list, tuple)) and bool(outcome) and isinstance(outcome[0], (list, tuple, np.ndarray))


class _LogitsPredictor:
    def __init__(self, settings: RunSettings, outcomes: Mapping[str, Any], default: Any):
        self.classes = load_card(settings.model_version).class_table()
        self.info = {"backend": LogitsBackend.name, "model_version": settings.model_version}
        self.outcomes, self.default, self.settings = outcomes, default, settings

    def predict(self, items: Iterable[MediaItem]) -> Iterator[RawResult]:
        for item in items:
            outcome = self.outcomes.get(item.relpath, self.default)
            if isinstance(outcome, str) and outcome.startswith("failure:"):
                yield RawResult(relpath=item.relpath, failure=outcome[len("failure:"):].strip())
            elif outcome == EMPTY:
                yield RawResult(relpath=item.relpath, width=100, height=100, animals=self._none())
            elif outcome in (HUMAN, VEHICLE_WORD):
                category = PERSON if outcome == HUMAN else VEHICLE
                yield RawResult(relpath=item.relpath, width=100, height=100,
                                detections=[Detection((10.0, 10.0, 60.0, 60.0), 0.9, category)], selected=0,
                                animals=self._none())
            elif _several(outcome):
                yield self._animals(item.relpath, [self._logits(item.relpath, o) for o in outcome])
            else:
                logits = self._logits(item.relpath, outcome)
                yield RawResult(relpath=item.relpath, width=100, height=100,
                                detections=[Detection((20.0, 20.0, 80.0, 80.0), 0.95, ANIMAL)], selected=0,
                                logits=logits,
                                animals=[AnimalLogits(0, logits)] if self.settings.every_animal else None)

    def _none(self) -> list | None:
        """No animal box: none to keep with --every-animal (an empty list), nothing without it."""
        return [] if self.settings.every_animal else None

    def _logits(self, relpath: str, outcome: Any) -> np.ndarray:
        logits = np.asarray(outcome, dtype=np.float32)
        if logits.shape != (self.classes.num_classes,):
            raise ValueError(f"{relpath}: {logits.shape[0] if logits.ndim else 0} logits given, model "
                             f"{self.classes.version} has {self.classes.num_classes} classes")
        return logits

    def _animals(self, relpath: str, logits: list[np.ndarray]) -> RawResult:
        """Several animals: 40-px boxes in a 400 x 400 image, left to right, the first the most confident (the
        one DeepFaune classifies); each box's logits kept only with --every-animal, as the real backend does."""
        boxes = [Detection((10.0 + 45 * (i % 8), 10.0 + 45 * (i // 8), 50.0 + 45 * (i % 8), 50.0 + 45 * (i // 8)),
                           round(0.95 - 0.01 * i, 2), ANIMAL) for i in range(len(logits))]
        animals = [AnimalLogits(i, values) for i, values in enumerate(logits)]
        return RawResult(relpath=relpath, width=400, height=400, detections=boxes, selected=0, logits=logits[0],
                         animals=animals if self.settings.every_animal else None)

    def close(self) -> None:
        pass


class LogitsBackend(Backend):
    """A backend whose raw outputs are given per relpath: logits (animal), "empty", "person", "vehicle" or
    "failure: why". What a host author needs to check what the host writes for known decisions."""

    name = "logits"
    description = "raw outputs given per file (deepfaune_plugin.testing)"

    def __init__(self, outcomes: Mapping[str, Any] | None = None, default: Any = EMPTY):
        self.outcomes, self.default = dict(outcomes or {}), default

    def open(self, settings: RunSettings) -> _LogitsPredictor:
        return _LogitsPredictor(settings, self.outcomes, self.default)


class StoredLogitsBackend(LogitsBackend):
    """A `LogitsBackend` that describes itself, so its outputs go to the result store and a later command
    re-decides them without running it (`deepfaune evaluate`, `deepfaune review`); `opened` counts its runs."""

    def __init__(self, outcomes: Mapping[str, Any] | None = None, default: Any = EMPTY):
        super().__init__(outcomes, default)
        self.opened = 0

    def describe(self, settings: RunSettings) -> BackendDescription:
        return BackendDescription(load_card(settings.model_version).class_table(),
                                  f"stored-logits-v1 {settings.model_version} {settings.detector_mode}")

    def open(self, settings: RunSettings) -> _LogitsPredictor:
        self.opened += 1
        return super().open(settings)


def logits_for(version: str, label: str, lang: str = "en", high: float = 8.0) -> list[float]:
    """Logits that DeepFaune `version` decides as `label` (a class name in `lang`) with a score near 1."""
    classes = load_card(version).class_table()
    labels = list(classes.labels(lang))
    if label not in labels:
        raise ValueError(f"{label!r} is not a class of model {version} in {lang!r}")
    values = [0.0] * len(labels)
    values[labels.index(label)] = high
    return values


class _Registers:
    """A plugin object around backends/hosts given directly, registered as an entry point's module would be."""

    def __init__(self, backends: Sequence[Any], hosts: Sequence[Any]):
        from .hookspecs import hookimpl

        self.register_backends = hookimpl(lambda register: [register(b) for b in backends])
        self.register_hosts = hookimpl(lambda register: [register(h) for h in hosts])


def registry_with(*plugins: Any, backends: Sequence[Any] = (), hosts: Sequence[Any] = (),
                  installed: bool = True) -> Registry:
    """The installed plugins (unless `installed=False`) plus `plugins` (modules or objects with hook
    implementations, as an entry point names them) plus `backends`/`hosts` objects given directly.

    What is given wins: a plugin given here that is also installed through its entry point (your own, after
    `pip install -e .`) is registered once, as given, and a backend, host or command given here replaces an
    installed one of the same name; so the same test passes whether or not the plugin is installed.
    """
    given = new_plugin_manager(load_entry_points=False)
    for n, plugin in enumerate(plugins):
        given.register(plugin, name=getattr(plugin, "__name__", f"test-plugin-{n}"))
    if backends or hosts:
        given.register(_Registers(backends, hosts), name="test-objects")
    registry = build_registry(given)
    if not installed:
        return registry
    pm = new_plugin_manager()
    modules = {getattr(plugin, "__name__", None) for plugin in plugins} - {None}
    for name, plugin in list(pm.list_name_plugin()):  # the installed copy of a plugin given here
        if any(plugin is p for p in plugins) or getattr(plugin, "__name__", None) in modules:
            pm.unregister(name=name)
    merged = build_registry(pm)
    merged.backends.update(registry.backends)
    merged.hosts.update(registry.hosts)
    merged.commands.update(registry.commands)
    merged.broken.extend(registry.broken)
    return merged


@dataclass
class CliResult:
    """What `run_cli` returns.

    Attributes:
        code: The command's exit status (0, 1, 2, 3, 130).
        stdout: What it printed on stdout.
        stderr: What it printed on stderr: warnings, errors, the run's summary.
    """

    code: int
    stdout: str
    stderr: str


def run_cli(argv: Sequence[str], registry: Registry | None = None) -> CliResult:
    """`deepfaune ARGV` in this process with `registry`, its exit code and what it printed."""
    from .cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv], registry=registry)
        except SystemExit as stop:  # argparse: --help, a usage error
            code = stop.code if isinstance(stop.code, int) else 1
    return CliResult(code, out.getvalue(), err.getvalue())
