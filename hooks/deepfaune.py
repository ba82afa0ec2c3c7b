"""The DeepFaune backend: detector(s) then classifier on ONNX Runtime, as DeepFaune 1.4.1 runs them."""
from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator

import numpy as np

from deepfaune_plugin.api import (ANIMAL, EXISTING_DETECTIONS, AnimalLogits, Backend, BackendDescription, BackendError,
                                  ClassTable, DeepfauneError, MediaItem, RawResult, RunSettings, hookimpl)
from deepfaune_plugin.models.cards import ModelCard, load_card
from deepfaune_plugin.models.installed import InstalledModels, default_models_dir
from deepfaune_plugin.engine.crop import crop_rgb, normalise, resize_pillow, square_box, too_small
from deepfaune_plugin.engine.detection import combine, needs_mds, select_box
from deepfaune_plugin.engine.imageio import Decoded, MediaError, decode_image
from deepfaune_plugin.engine.keyframe import video_result
from deepfaune_plugin.engine.known_boxes import select_known
from deepfaune_plugin.engine.onnx_models import OnnxClassifier, OnnxDetector
from deepfaune_plugin.engine.providers import DeviceChoice, choose_device, requested_device
from deepfaune_plugin.engine.video import VideoFrames, read_frames

PREFETCH = 2  # files decoded ahead of inference, on another thread (a video: its sampled frames)
#: --every-animal: crops per classifier call beyond the image's own box (bounds the memory of a crowded image)
CROP_BATCH = 16
#: Bump when a change of this backend's code changes raw outputs: stored outputs are then recomputed.
ENGINE_REVISION = 1
#: The same for what `--fast` does besides choosing its int8 model files.
FAST_REVISION = 1


@dataclass(frozen=True)
class ModelPlan:
    """Which card and which verified-on-load files a run uses; known without loading a model."""

    card: ModelCard
    installed: InstalledModels
    mode: str
    classifier: str  # file names in the models directory
    detectors: dict[str, str]
    fast: bool = False
    variant: str = ""  # "", "int8" or "fp16"

    @classmethod
    def for_settings(cls, settings: RunSettings) -> "ModelPlan":
        try:
            card = load_card(settings.model_version)
        except ValueError as err:
            raise BackendError(str(err)) from err
        mode = settings.detector_mode
        if mode != EXISTING_DETECTIONS and mode not in card.detector_modes:
            raise BackendError(f"detector mode {mode} is not available for DeepFaune {card.version} "
                                 f"(available: {', '.join(card.detector_modes)})")
        installed = InstalledModels(settings.models_dir or default_models_dir())
        # --fast: the int8 files on the CPU, the fp16 ones on a GPU; the fingerprint changes with the files
        variant = fast_variant(choose_device(requested_device(settings.device))) if settings.fast else ""
        detectors = {m: installed.file_name(card.version, "detector" + variant, mode=m) for m in ("DF", "MDS")
                     if m in mode and mode != EXISTING_DETECTIONS}  # "existing": the host's boxes, no detector
        return cls(card, installed, mode, installed.file_name(card.version, "classifier" + variant), detectors,
                   settings.fast, variant.lstrip("_"))

    def info(self) -> dict[str, Any]:
        files = [("classifier", self.classifier)] + [(f"detector-{m}", f) for m, f in self.detectors.items()]
        return {
            "backend": "deepfaune",
            "model_version": self.card.version,
            "detector_mode": self.mode,
            "standin": self.installed.is_standin(self.card.version),
            **({"fast": True, "variant": self.variant} if self.fast else {}),
            "files": {role: {"file": name, "sha256": self.installed.file_info(name)["sha256"]} for role, name in files},
        }

    def fingerprint(self) -> str:
        info = self.info()
        key = {"card": self.card.version, "mode": self.mode, "files": info["files"], "engine": ENGINE_REVISION}
        if self.fast:  # anything --fast does beyond its files changes outputs too
            key["fast"] = FAST_REVISION
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class DeepFaunePredictor:
    def __init__(self, settings: RunSettings):
        plan = ModelPlan.for_settings(settings)
        self.card, self.installed, self.mode = plan.card, plan.installed, plan.mode
        self.threads = settings.threads
        self.every_animal = settings.every_animal
        clf_path = self.installed.verified_path(plan.classifier)
        self.low_memory = plan.fast  # --fast also keeps within its memory budget (no onnxruntime arena)
        self.device: DeviceChoice = choose_device(requested_device(settings.device))
        self.classifier = OnnxClassifier(clf_path, threads=self.threads, size=self.card.classifier.crop_size,
                                         low_memory=self.low_memory, device=self.device)
        self.device = self.classifier.device  # after a fallback, the detectors go straight to the CPU
        if self.classifier.num_classes != self.card.classifier.num_classes:
            raise BackendError(f"{clf_path}: {self.classifier.num_classes} classes, but DeepFaune "
                                 f"{self.card.version} has {self.card.classifier.num_classes}")
        self.crop_size = self.card.classifier.crop_size
        self.classes: ClassTable = self.card.class_table()
        self._detectors: dict[str, OnnxDetector] = {}
        self._detector_files = {m: self.installed.verified_path(name) for m, name in plan.detectors.items()}
        # Load what every image needs now; the MegaDetector backstop of DFbsMDS only when first needed.
        for m in plan.detectors:
            if not (self.mode == "DFbsMDS" and m == "MDS"):
                self._detector(m)
        self.info: dict[str, Any] = {**plan.info(), "device": device_info(self.device)}

    def _detector(self, m: str) -> OnnxDetector:
        if m not in self._detectors:
            spec = self.card.detectors[m]
            try:
                detector = OnnxDetector(self._detector_files[m], size=spec.size, conf=spec.conf, source=m,
                                        threads=self.threads, low_memory=self.low_memory, device=self.device)
            except OSError as err:  # loaded on first need (DFbsMDS's backstop): gone since the run began
                raise BackendError(f"{self._detector_files[m]}: cannot load the {m} detector ({err})") from err
            self._detectors[m] = detector
            if detector.device != self.device:  # a provider that took the classifier but not this detector
                self.device = detector.device
                if hasattr(self, "info"):
                    self.info["device"] = device_info(self.device)
        return self._detectors[m]

    def _run(self, m: str, image: np.ndarray, tensors: dict[int, tuple]) -> list:
        detector = self._detector(m)
        if detector.size not in tensors:  # both detectors take 960 px: one letterbox serves both
            tensors[detector.size] = detector.prepare(image)
        return detector.detect(*tensors[detector.size])

    def _detect(self, image: np.ndarray, tensors: dict[int, tuple] | None = None):
        tensors = {} if tensors is None else tensors
        df = self._run("DF", image, tensors) if "DF" in self.mode else None
        mds = self._run("MDS", image, tensors) if needs_mds(self.mode, df) else None
        return combine(self.mode, df, mds)

    def _load_image(self, path) -> tuple[Decoded, dict[int, tuple]]:
        """Decode and letterbox for the first detector, on the prefetch thread (cv2 releases the GIL)."""
        decoded = decode_image(path)
        first = self._detectors["DF" if "DF" in self.mode else "MDS"]  # loaded at start: only MDS waits in DFbsMDS
        return decoded, {first.size: first.prepare(decoded.image)}

    def infer(self, relpath: str, image: np.ndarray, tensors: dict[int, tuple] | None = None,
              frame: bool = False) -> RawResult:
        """One image (or, `frame`, one video frame: --every-animal classifies the boxes of images only)."""
        height, width = image.shape[:2]
        detections = self._detect(image, tensors)
        selected = select_box(detections)
        raw = RawResult(relpath=relpath, width=width, height=height, detections=detections, selected=selected)
        if selected is not None and detections[selected].category == ANIMAL:
            self._classify(raw, image, detections[selected].box)
        if self.every_animal and not frame:
            raw.animals = self._classify_animals(raw, image)
        return raw

    def _classify(self, raw: RawResult, image: np.ndarray, box) -> None:
        """Logits of DeepFaune's square crop around `box` (pixels x1, y1, x2, y2)."""
        crop = resize_pillow(crop_rgb(image, square_box(box, raw.width, raw.height)), self.crop_size)
        out = self.classifier.classify(normalise(crop[None]))
        raw.logits = out.logits[0]
        raw.bird_logits = None if out.bird_logits is None else out.bird_logits[0]
        raw.features = None if out.features is None else out.features[0]

    def _classify_animals(self, raw: RawResult, image: np.ndarray) -> list[AnimalLogits]:
        """--every-animal: every animal box cropped as DeepFaune crops its best one, the crops classified in
        batches.  The selected box keeps the outputs computed for the image (so DeepFaune's own answer is the
        same, and costs nothing twice); a crop too small to classify is left without logits."""
        found: dict[int, AnimalLogits] = {}
        crops, wanted = [], []
        for i, det in enumerate(raw.detections):
            if det.category != ANIMAL:
                continue
            if i == raw.selected and raw.logits is not None:
                found[i] = AnimalLogits(i, raw.logits, raw.bird_logits)
                continue
            bounds = square_box(det.box, raw.width, raw.height)
            if too_small(bounds):
                found[i] = AnimalLogits(i, None)
                continue
            crops.append(resize_pillow(crop_rgb(image, bounds), self.crop_size))
            wanted.append(i)
        for start in range(0, len(crops), CROP_BATCH):
            logits, bird = self.classifier(normalise(np.stack(crops[start:start + CROP_BATCH])))
            for k, i in enumerate(wanted[start:start + CROP_BATCH]):
                found[i] = AnimalLogits(i, logits[k], None if bird is None else bird[k])
        return [found[i] for i in sorted(found)]

    def infer_known(self, item: MediaItem, image: np.ndarray) -> RawResult:
        """Detector mode "existing": the item's known boxes under DeepFaune's MegaDetector-file rules."""
        height, width = image.shape[:2]
        chosen = select_known(item.known_boxes, width, height)
        raw = RawResult(relpath=item.relpath, width=width, height=height, detections=chosen.detections,
                        selected=chosen.selected)
        if chosen.selected is not None and chosen.detections[chosen.selected].category == ANIMAL:
            self._classify(raw, image, chosen.crop)
        if self.every_animal:  # the other boxes are cropped from their pixel boxes (the selected one: as above)
            raw.animals = self._classify_animals(raw, image)
        return raw

    def infer_video(self, relpath: str, video: VideoFrames) -> RawResult:
        """Each sampled frame through `infer`, as PredictorVideo sends each frame through the detector."""
        frames: list[RawResult] = []
        done: dict[int, RawResult] = {}
        unreadable = []
        for number, image in zip(video.indices, video.frames):
            if image is None:
                beyond = number >= video.total
                reason = "beyond the last frame" if beyond else "frame could not be decoded"
                if not beyond:
                    unreadable.append(number)
                frames.append(RawResult(relpath=relpath, frame_number=number, failure=reason))
            elif number in done:  # a short video repeats frames: same pixels, same outputs
                frames.append(replace(done[number], detections=list(done[number].detections), warnings=[]))
            else:
                done[number] = self.infer(relpath, image, frame=True)
                done[number].frame_number = number
                frames.append(done[number])
        return video_result(relpath, frames, video.fps, notes=video.notes + (
            [f"frames not decoded: {', '.join(map(str, unreadable))} (DeepFaune counts them empty)"]
            if unreadable else []))

    def predict(self, items: Iterable[MediaItem]) -> Iterator[RawResult]:
        items = iter(items)
        workers = decode_workers(self.device)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
            pending: deque = deque()

            def submit() -> bool:
                item = next(items, None)
                if item is None:
                    return False
                unusable = no_known_boxes(item) if self.mode == EXISTING_DETECTIONS else None
                load = read_frames if item.is_video else (
                    decode_image if self.mode == EXISTING_DETECTIONS else self._load_image)
                pending.append((item, unusable or pool.submit(load, item.path)))
                return True

            for _ in range(PREFETCH * workers):
                submit()
            while pending:
                item, future = pending.popleft()
                submit()
                if isinstance(future, str):  # nothing to decode: the reason is known already
                    yield RawResult(relpath=item.relpath, failure=future)
                    continue
                try:
                    media = future.result()
                except MediaError as err:  # what the decoder printed about it goes in its `warning`
                    yield RawResult(relpath=item.relpath, failure=str(err), warnings=list(err.details))
                    continue
                except DeepfauneError:  # the run's own (a model missing or breaking its contract)
                    raise
                except Exception as err:  # decoding or letterboxing this file (e.g. 1x20000 px): its failure
                    yield RawResult(relpath=item.relpath, failure=f"cannot be prepared for the models: {err}")
                    continue
                warnings: tuple[str, ...] = ()
                tensors = None
                if isinstance(media, tuple):  # an image with its detector input made ahead
                    media, tensors = media
                if isinstance(media, Decoded):  # an image, with what its decoding noticed (a truncated JPEG)
                    media, warnings = media.image, media.warnings
                try:
                    if self.mode == EXISTING_DETECTIONS:
                        raw = self.infer_known(item, media)
                    elif isinstance(media, VideoFrames):
                        raw = self.infer_video(item.relpath, media)
                    else:
                        raw = self.infer(item.relpath, media, tensors)
                except DeepfauneError:  # a model file gone or breaking its contract: every file would fail
                    raise
                except Exception as err:  # one bad file never stops a season's run
                    yield RawResult(relpath=item.relpath, failure=f"inference failed: {err}")
                    continue
                raw.warnings.extend(warnings)
                yield raw

    def close(self) -> None:
        self._detectors.clear()
        self.classifier = None


def fast_variant(choice: DeviceChoice) -> str:
    """The files --fast runs on `choice`: int8 where integer products are fast (the CPU, OpenVINO on a CPU), fp16
    on a GPU, which runs quantised operators slower than fp32 or not at all (made by `models quantize`)."""
    return "_int8" if choice.device in ("cpu", "openvino") else "_fp16"


def decode_workers(choice: DeviceChoice) -> int:
    """Threads decoding and letterboxing ahead of the models. On the CPU one (the models use every core, the
    measured best: benchmarks/RESULTS.md, issue 10); on a GPU, decoding a 12-MP JPEG takes longer than both
    models, so more threads keep the GPU fed (cv2 releases the GIL while it decodes)."""
    if choice.device in ("cpu", "openvino"):
        return 1
    return max(2, min(6, (os.cpu_count() or 2) - 1))


def device_info(choice: DeviceChoice) -> dict[str, str]:
    """What the run record says about where the models ran (never part of the store's fingerprint: every
    provider gives the CPU's answers within float tolerance)."""
    info = {"requested": choice.requested, "device": choice.device, "provider": choice.provider}
    return {**info, "note": choice.note} if choice.note else info


def no_known_boxes(item: MediaItem) -> str | None:
    """Why an item cannot be classified in detector mode "existing", or None."""
    if item.is_video:
        return "existing detections are used for images only: run videos with a detector mode"
    if item.known_boxes is None:
        return "no existing detections for this file"
    return None


class DeepFauneBackend(Backend):
    name = "deepfaune"
    description = "DeepFaune 1.3-1.5 detector + classifier on ONNX Runtime (CPU, or a GPU with --device)"

    def describe(self, settings: RunSettings) -> BackendDescription:
        plan = ModelPlan.for_settings(settings)
        return BackendDescription(classes=plan.card.class_table(), fingerprint=plan.fingerprint(), info=plan.info())

    def open(self, settings: RunSettings) -> DeepFaunePredictor:
        return DeepFaunePredictor(settings)


@hookimpl
def register_backends(register):
    register(DeepFauneBackend())
