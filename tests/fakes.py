"""A fake backend for host-adapter tests: deterministic raw outputs without any model.

Each file's outcome is chosen by a rule on its name (or an explicit mapping), so a host test can
plant an animal sequence, a person, an empty image and a failure, and check what the host writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.modelcards import load_card
from deepfaune_plugin.plugins import Registered, Registry, build_registry, new_plugin_manager
from deepfaune_plugin.types import ANIMAL, PERSON, VEHICLE, Detection, MediaItem, RawResult

W, H = 4000, 3000


def outcome_from_name(item: MediaItem) -> str:
    """'fox' in the name → a confident fox; 'person', 'vehicle', 'empty', 'broken' likewise; else empty."""
    name = item.path.name.lower()
    for key in ("broken", "person", "vehicle", "empty"):
        if key in name:
            return key
    for species in ("fox", "red deer", "wild boar", "bird", "badger", "roe deer", "chamois"):
        if species.replace(" ", "") in name.replace(" ", "").replace("_", ""):
            return species
    return "empty"


class FakePredictor:
    def __init__(self, settings: RunSettings, rule: Callable[[MediaItem], str]):
        card = load_card(settings.model_version)
        self.classes = card.class_table()
        self.info = {"backend": "fake", "model_version": card.version, "standin": True}
        self.rule = rule
        self._english = list(self.classes.names["en"])

    def raw_for(self, item: MediaItem, outcome: str) -> RawResult:
        if outcome == "broken":
            return RawResult(relpath=item.relpath, failure="not an image (unrecognised format)")
        raw = RawResult(relpath=item.relpath, width=W, height=H)
        if outcome == "empty":
            return raw
        if outcome in ("person", "vehicle"):
            cat = PERSON if outcome == "person" else VEHICLE
            raw.detections = [Detection((400.0, 300.0, 1200.0, 2100.0), 0.91, cat)]
            raw.selected = 0
            return raw
        logits = np.zeros(len(self._english), dtype=np.float32)
        logits[self._english.index(outcome)] = 8.0  # softmax ≈ 0.99 → a confident label
        raw.detections = [Detection((1000.0, 750.0, 2000.0, 1500.0), 0.88, ANIMAL)]
        raw.selected = 0
        raw.logits = logits
        if self.classes.bird_names is not None:
            raw.bird_logits = np.array([0, 0, 0, 0, 0, 6.0, 0, 0], dtype=np.float32)
        return raw

    def predict(self, items: Iterable[MediaItem]) -> Iterator[RawResult]:
        for item in items:
            yield self.raw_for(item, self.rule(item))

    def close(self) -> None:
        pass


class FakeBackend:
    name = "fake"
    description = "deterministic outputs from file names (tests only)"

    def __init__(self, rule: Callable[[MediaItem], str] | Mapping[str, str] = outcome_from_name):
        if isinstance(rule, Mapping):
            mapping = dict(rule)
            rule = lambda item: mapping.get(item.relpath, "empty")  # noqa: E731
        self.rule = rule

    def open(self, settings: RunSettings) -> FakePredictor:
        return FakePredictor(settings, self.rule)


def registry_with_fake(rule=outcome_from_name) -> Registry:
    """The installed plugins plus the fake backend (use with RunSettings(backend="fake"))."""
    registry = build_registry(new_plugin_manager())
    registry.backends["fake"] = Registered("fake", FakeBackend(rule), "tests", "tests")
    return registry
