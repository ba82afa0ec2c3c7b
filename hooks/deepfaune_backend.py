"""The DeepFaune backend: detector(s) then classifier on ONNX Runtime, as DeepFaune 1.4.1 runs them."""
from __future__ import annotations

import hashlib
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from deepfaune_plugin.api import BackendDescription, RunSettings
from deepfaune_plugin.engine.crop import crop_rgb, normalise, resize_pillow, square_box
from deepfaune_plugin.engine.detection import combine, needs_mds, select_box
from deepfaune_plugin.engine.imageio import MediaError, read_image
from deepfaune_plugin.engine.onnx_models import OnnxClassifier, OnnxDetector
from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.hookspecs import hookimpl
from deepfaune_plugin.modelcards import ModelCard, load_card
from deepfaune_plugin.modelstore import ModelStore, default_models_dir
from deepfaune_plugin.types import ANIMAL, ClassTable, MediaItem, RawResult

PREFETCH = 2  # images decoded ahead of inference, on another thread
#: Bump when a change of this backend's code changes raw outputs: stored outputs are then recomputed.
ENGINE_REVISION = 1


@dataclass(frozen=True)
class ModelPlan:
    """Which card and which verified-on-load files a run uses; known without loading a model."""

    card: ModelCard
    store: ModelStore
    mode: str
    classifier: str  # file names in the models directory
    detectors: dict[str, str]

    @classmethod
    def for_settings(cls, settings: RunSettings) -> "ModelPlan":
        try:
            card = load_card(settings.model_version)
        except ValueError as err:
            raise DeepfauneError(str(err)) from err
        mode = settings.detector_mode
        if mode not in card.detector_modes:
            raise DeepfauneError(f"detector mode {mode} is not available for DeepFaune {card.version} "
                                 f"(available: {', '.join(card.detector_modes)})")
        store = ModelStore(settings.models_dir or default_models_dir())
        detectors = {m: store.file_name(card.version, "detector", mode=m) for m in ("DF", "MDS") if m in mode}
        return cls(card, store, mode, store.file_name(card.version, "classifier"), detectors)

    def info(self) -> dict[str, Any]:
        files = [("classifier", self.classifier)] + [(f"detector-{m}", f) for m, f in self.detectors.items()]
        return {
            "backend": "deepfaune",
            "model_version": self.card.version,
            "detector_mode": self.mode,
            "standin": self.store.is_standin(self.card.version),
            "files": {role: {"file": name, "sha256": self.store.file_info(name)["sha256"]} for role, name in files},
        }

    def fingerprint(self) -> str:
        info = self.info()
        key = {"card": self.card.version, "mode": self.mode, "files": info["files"], "engine": ENGINE_REVISION}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class DeepFaunePredictor:
    def __init__(self, settings: RunSettings):
        plan = ModelPlan.for_settings(settings)
        self.card, self.store, self.mode = plan.card, plan.store, plan.mode
        self.threads = settings.threads
        version = self.card.version
        clf_path = self.store.file_for(version, "classifier")
        self.classifier = OnnxClassifier(clf_path, threads=self.threads, size=self.card.classifier.crop_size)
        if self.classifier.num_classes != self.card.classifier.num_classes:
            raise DeepfauneError(f"{clf_path}: {self.classifier.num_classes} classes, but DeepFaune {version} has "
                                 f"{self.card.classifier.num_classes}")
        self.crop_size = self.card.classifier.crop_size
        self.classes: ClassTable = self.card.class_table()
        self._detectors: dict[str, OnnxDetector] = {}
        self._detector_files = {m: self.store.file_for(version, "detector", mode=m) for m in plan.detectors}
        # Load what every image needs now; the MegaDetector backstop of DFbsMDS only when first needed.
        for m in plan.detectors:
            if not (self.mode == "DFbsMDS" and m == "MDS"):
                self._detector(m)
        self.info: dict[str, Any] = plan.info()

    def _detector(self, m: str) -> OnnxDetector:
        if m not in self._detectors:
            spec = self.card.detectors[m]
            self._detectors[m] = OnnxDetector(self._detector_files[m], size=spec.size, conf=spec.conf, source=m,
                                              threads=self.threads)
        return self._detectors[m]

    def _detect(self, image: np.ndarray):
        df = self._detector("DF")(image) if "DF" in self.mode else None
        mds = self._detector("MDS")(image) if needs_mds(self.mode, df) else None
        return combine(self.mode, df, mds)

    def infer(self, relpath: str, image: np.ndarray) -> RawResult:
        height, width = image.shape[:2]
        detections = self._detect(image)
        selected = select_box(detections)
        raw = RawResult(relpath=relpath, width=width, height=height, detections=detections, selected=selected)
        if selected is not None and detections[selected].category == ANIMAL:
            box = square_box(detections[selected].box, width, height)
            crop = resize_pillow(crop_rgb(image, box), self.crop_size)
            logits, bird = self.classifier(normalise(crop[None]))
            raw.logits = logits[0]
            raw.bird_logits = None if bird is None else bird[0]
        return raw

    def predict(self, items: Iterable[MediaItem]) -> Iterator[RawResult]:
        items = iter(items)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
            pending: deque = deque()

            def submit() -> bool:
                item = next(items, None)
                if item is None:
                    return False
                pending.append((item, pool.submit(read_image, item.path)))
                return True

            for _ in range(PREFETCH):
                submit()
            while pending:
                item, future = pending.popleft()
                submit()
                try:
                    image = future.result()
                except MediaError as err:
                    yield RawResult(relpath=item.relpath, failure=str(err))
                    continue
                try:
                    yield self.infer(item.relpath, image)
                except Exception as err:  # one bad file never stops a season's run
                    yield RawResult(relpath=item.relpath, failure=f"inference failed: {err}")

    def close(self) -> None:
        self._detectors.clear()
        self.classifier = None


class DeepFauneBackend:
    name = "deepfaune"
    description = "DeepFaune 1.3-1.5 detector + classifier on ONNX Runtime (CPU)"

    def describe(self, settings: RunSettings) -> BackendDescription:
        plan = ModelPlan.for_settings(settings)
        return BackendDescription(classes=plan.card.class_table(), fingerprint=plan.fingerprint(), info=plan.info())

    def open(self, settings: RunSettings) -> DeepFaunePredictor:
        return DeepFaunePredictor(settings)


@hookimpl
def register_backends(register):
    register(DeepFauneBackend())
