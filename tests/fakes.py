"""A fake backend for host-adapter tests: deterministic raw outputs without any model.

Each file's outcome is chosen by a rule on its name (or an explicit mapping), so a host test can
plant an animal sequence, a person, an empty image and a failure, and check what the host writes.

A video (a real file the test wrote) gets DeepFaune's sampled frames, read from its frame count
and rate as OpenCV reports them: the outcome in the even sampled frames (0, 2, 4...), nothing in
the odd ones, two boxes in the third (so its count is 2), an animal logit growing by 0.1 per
sampled frame (so the key frame is the last even one), boxes scaled to the video's frame size;
a repeated frame (short videos) repeats the outputs of its first sampling.

Several animals in one image: an outcome "fox+badger+fox" gives one animal box per name, left to right and by
falling confidence (0.88, 0.8, 0.72...), the first one DeepFaune's; "tiny" names a box too small to classify.
With `--every-animal` each animal box gets its own logits (`RawResult.animals`), a single animal's included.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable, Iterator, Mapping

import cv2
import numpy as np

from deepfaune_plugin.api import Backend, RunSettings
from deepfaune_plugin.engine.keyframe import video_result
from deepfaune_plugin.engine.video import NO_FRAMES, UNDECODABLE, sample_frame_indices
from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.plugins import Registered, Registry, build_registry, new_plugin_manager
from deepfaune_plugin.types import ANIMAL, PERSON, VEHICLE, AnimalLogits, Detection, MediaItem, RawResult

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
    def __init__(self, settings: RunSettings, rule: Callable[[MediaItem], str], standin: bool = False):
        card = load_card(settings.model_version)
        self.classes = card.class_table()
        # labels from file names are what a real model would say: not a stand-in run unless a test asks for one
        self.info = {"backend": "fake", "model_version": card.version, "standin": standin}
        self.rule = rule
        self._english = list(self.classes.names["en"])
        self.every_animal = settings.every_animal

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
        if "+" in outcome:
            return self.animals_for(raw, outcome.split("+"))
        raw.detections = [Detection((1000.0, 750.0, 2000.0, 1500.0), 0.88, ANIMAL)]
        raw.selected = 0
        raw.logits = self.logits_for(outcome)
        if self.classes.bird_names is not None:
            raw.bird_logits = np.array([0, 0, 0, 0, 0, 6.0, 0, 0], dtype=np.float32)
        if self.every_animal:
            raw.animals = [AnimalLogits(0, raw.logits, raw.bird_logits)]
        return raw

    def logits_for(self, species: str) -> np.ndarray:
        logits = np.zeros(len(self._english), dtype=np.float32)
        logits[self._english.index(species)] = 8.0  # softmax ≈ 0.99 → a confident label
        return logits

    def animals_for(self, raw: RawResult, names: list[str]) -> RawResult:
        """One animal box per name (see the module docstring); "tiny" is a 20 x 16 px box."""
        for i, name in enumerate(names):
            x = 200.0 + 900.0 * i
            box = (x, 700.0, x + 20.0, 716.0) if name == "tiny" else (x, 700.0, x + 800.0, 1500.0)
            raw.detections.append(Detection(box, round(0.88 - 0.08 * i, 2), ANIMAL))
        raw.selected = 0
        raw.logits = self.logits_for(names[0])
        if self.every_animal:
            raw.animals = [AnimalLogits(i, None if name == "tiny" else self.logits_for(name))
                           for i, name in enumerate(names)]
        return raw

    def video_for(self, item: MediaItem, outcome: str) -> RawResult:
        """A video's result as the DeepFaune backend shapes it (see the module docstring)."""
        if outcome == "broken":
            return RawResult(relpath=item.relpath, failure=UNDECODABLE)
        cap = cv2.VideoCapture(str(item.path))
        try:
            total, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS))
            width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            opened = cap.isOpened()
        finally:
            cap.release()
        if not opened:
            return RawResult(relpath=item.relpath, failure=UNDECODABLE)
        if total <= 0:
            return RawResult(relpath=item.relpath, failure=NO_FRAMES)
        frames: list[RawResult] = []
        done: dict[int, RawResult] = {}
        for k, number in enumerate(sample_frame_indices(total, fps)):
            if number >= total:
                frames.append(RawResult(relpath=item.relpath, frame_number=number, failure="beyond the last frame"))
                continue
            if number in done:  # a short video's repeated frame: the same outputs, as the backend gives
                frames.append(replace(done[number], detections=list(done[number].detections)))
                continue
            frame = self.raw_for(item, outcome if k % 2 == 0 else "empty")
            sx, sy = width / W, height / H
            frame.detections = [Detection((d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy), d.conf,
                                          d.category) for d in frame.detections]
            if k == 2 and frame.detections:
                d = frame.detections[0]
                dx = 0.35 * width
                frame.detections.append(Detection((d.box[0] + dx, d.box[1], d.box[2] + dx, d.box[3]), 0.8, d.category))
            if frame.logits is not None:
                frame.logits = frame.logits + np.float32(0.1 * k) * (frame.logits > 0)
            frame.width, frame.height, frame.frame_number = width, height, number
            done[number] = frame
            frames.append(frame)
        return video_result(item.relpath, frames, fps)

    def predict(self, items: Iterable[MediaItem]) -> Iterator[RawResult]:
        for item in items:
            outcome = self.rule(item)
            yield self.video_for(item, outcome) if item.is_video else self.raw_for(item, outcome)

    def close(self) -> None:
        pass


class FakeBackend(Backend):
    name = "fake"
    description = "deterministic outputs from file names (tests only)"

    def __init__(self, rule: Callable[[MediaItem], str] | Mapping[str, str] = outcome_from_name,
                 standin: bool = False):
        if isinstance(rule, Mapping):
            mapping = dict(rule)
            rule = lambda item: mapping.get(item.relpath, "empty")  # noqa: E731
        self.rule = rule
        self.standin = standin

    def open(self, settings: RunSettings) -> FakePredictor:
        return FakePredictor(settings, self.rule, self.standin)


def registry_with_fake(rule=outcome_from_name, standin: bool = False) -> Registry:
    """The installed plugins plus the fake backend (use with RunSettings(backend="fake")); `standin`: its info
    says stand-in models, as `deepfaune models stand-in`'s do."""
    registry = build_registry(new_plugin_manager())
    registry.backends["fake"] = Registered("fake", FakeBackend(rule, standin), "tests", "tests")
    return registry


class PlainPicklableBackend:
    """A backend written as a plain object (no api.Backend base), importable so that it pickles."""

    name = "plain-picklable"
    extra = 7

    def open(self, settings):
        raise AssertionError("not opened in these tests")
