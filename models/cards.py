"""Model cards: what each DeepFaune version is (files, sizes, constants, labels), read from YAML.

The cards are self-contained data (`models/deepfaune-X.Y.yaml`) so that the class tables and
decision constants travel with the package and can be checked against DeepFaune in one place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from ..types import ClassTable

_CARD_NAME = re.compile(r"^deepfaune-(\d+(?:\.\d+)+)\.yaml$")
_NON_ANIMAL_KINDS = ("human", "vehicle", "empty", "undefined")


def cards_dir() -> Path:
    """Where the YAML cards are: beside this module, in the `deepfaune_plugin.models` package."""
    return Path(__file__).resolve().parent


@dataclass(frozen=True)
class VitArchitecture:
    """The backbone's shape: enough to rebuild a same-cost stand-in or check an export."""

    patch_size: int
    embed_dim: int
    depth: int
    heads: int
    mlp_dim: int
    qkv_bias: bool
    norm_eps: float
    register_tokens: int
    position: str  # "learned" (DINOv2 position table) or "rope" (DINOv3)

    def weight_bytes(self, num_classes: int) -> int:
        """The float32 bytes of the backbone and a `num_classes` head: what a checkpoint of it needs in memory
        (a learned position table, a few MB, is left to the reader's slack: its grid is the backbone's own)."""
        d, m = self.embed_dim, self.mlp_dim
        attention = 4 * d * d + (3 * d if self.qkv_bias else 0) + d  # qkv and projection
        block = attention + 2 * d * m + m + d + 4 * d + 2 * d  # MLP, two norms, two layer scales
        stem = 3 * self.patch_size ** 2 * d + d + (1 + self.register_tokens) * d  # patches, class and register tokens
        return 4 * (self.depth * block + stem + 2 * d + d * num_classes + num_classes)


@dataclass(frozen=True)
class ClassifierSpec:
    file: str  # official PyTorch checkpoint name
    url: str
    size_bytes: int | None
    backbone: str  # timm model name
    crop_size: int
    num_classes: int
    global_pool: str | None
    onnx: str  # file name of the exported ONNX model (bird head included when the card has one)
    architecture: VitArchitecture

    def weight_bytes(self) -> int:
        return self.architecture.weight_bytes(self.num_classes)


@dataclass(frozen=True)
class BirdHeadSpec:
    file: str
    url: str
    classes: int
    hidden: int

    def weight_bytes(self, embed_dim: int) -> int:
        """Linear(embed_dim, hidden), BatchNorm1d(hidden) (4 vectors), Linear(hidden, classes), in float32."""
        h = self.hidden
        return 4 * (embed_dim * h + h + 4 * h + h * self.classes + self.classes)


@dataclass(frozen=True)
class DetectorSpec:
    name: str  # "DF", "MDS"
    file: str
    url: str
    size: int  # inference width/height target in pixels
    conf: float  # confidence threshold DeepFaune applies
    onnx: str
    architecture: str
    mirror_url: str | None = None
    licence: str | None = None

    def weight_bytes(self) -> int | None:
        """The float32 bytes of the architecture's weights (ultralytics' published parameter counts, rounded
        up), or None for an architecture not listed."""
        params = YOLO_PARAMETERS.get(self.architecture)
        return None if params is None else 4 * params


#: Parameters of the ultralytics detectors (their model tables), rounded up.
YOLO_PARAMETERS = {"yolov8n": 3_200_000, "yolov8s": 11_200_000, "yolov8m": 25_900_000, "yolov8l": 43_700_000,
                   "yolov8x": 68_200_000, "yolo11n": 2_600_000, "yolo11s": 9_500_000, "yolo11m": 20_100_000,
                   "yolo11l": 25_300_000, "yolo11x": 56_900_000}


@dataclass(frozen=True)
class Temperatures:
    single: float  # one animal row
    multi: float  # several animal rows (sequence, video)
    bird: float
    confirmed: bool = True  # False: placeholder values not found in DeepFaune's source


@dataclass(frozen=True)
class ModelCard:
    """A DeepFaune version's card (models/deepfaune-VERSION.yaml): what its models are and how to decide.

    Attributes:
        version: The DeepFaune version ("1.4").
        release_notes: What changed in this version, as its authors said.
        licence_weights: The weights' licence (CC BY-SA 4.0 from 1.3).
        licence_code: DeepFaune's code licence.
        citations: What to cite when using it.
        classifier: The classifier's files, input size and architecture.
        bird_head: The bird head's files, or None when the version has none.
        temperatures: The logit temperatures (one row, several rows, the bird head).
        threshold: DeepFaune's default score threshold.
        detectors: Detector name ("DF", "MDS") -> its files and thresholds.
        detector_modes: The `--detector` modes this version supports.
        default_detector_mode: The mode used when none is given.
        languages: The label languages.
        labels: Language -> the animal labels, in the classifier's output order.
        bird_labels: Language -> the bird head's labels, or None.
        non_animal: "human" | "vehicle" | "empty" | "undefined" -> language -> label.
    """

    version: str
    release_notes: str
    licence_weights: str
    licence_code: str
    citations: tuple[str, ...]
    classifier: ClassifierSpec
    bird_head: BirdHeadSpec | None
    temperatures: Temperatures
    threshold: float
    detectors: Mapping[str, DetectorSpec]
    detector_modes: tuple[str, ...]
    default_detector_mode: str
    languages: tuple[str, ...]
    labels: Mapping[str, tuple[str, ...]]
    bird_labels: Mapping[str, tuple[str, ...]] | None
    non_animal: Mapping[str, Mapping[str, str]]

    def class_table(self) -> ClassTable:
        t = self.temperatures
        return ClassTable(
            version=self.version,
            names=self.labels,
            bird_names=self.bird_labels,
            non_animal=self.non_animal,
            temperature_single=t.single,
            temperature_multi=t.multi,
            temperature_bird=t.bird,
        )

    def detector(self, name: str) -> DetectorSpec:
        if name not in self.detectors:
            raise ValueError(
                f"model {self.version} has no detector {name!r}; choose one of {', '.join(self.detectors)}"
            )
        return self.detectors[name]


def version_key(version: str) -> tuple[int, ...]:
    """A model version's numbers, for sorting ("1.10" after "1.9")."""
    return tuple(int(part) for part in version.split("."))


def available_versions() -> list[str]:
    found = [m.group(1) for p in cards_dir().glob("deepfaune-*.yaml") if (m := _CARD_NAME.match(p.name))]
    return sorted(found, key=version_key)


def load_card(version: str) -> ModelCard:
    versions = available_versions()
    if version not in versions:
        raise ValueError(f"unknown DeepFaune model version {version!r}; available: {', '.join(versions)}")
    path = cards_dir() / f"deepfaune-{version}.yaml"
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    try:
        card = _parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid model card {path}: {exc}") from exc
    if card.version != version:
        raise ValueError(f"model card {path} says version {card.version!r}")
    return card


def _frozen_labels(raw: Mapping[str, Any], languages: tuple[str, ...], expected: int, what: str):
    out = {}
    for lang in languages:
        labels = tuple(str(s) for s in raw[lang])
        if len(labels) != expected:
            raise ValueError(f"{what}[{lang}] has {len(labels)} labels, expected {expected}")
        out[lang] = labels
    return MappingProxyType(out)


def _parse(data: Mapping[str, Any]) -> ModelCard:
    version = str(data["version"])
    c = data["classifier"]
    arch = VitArchitecture(**{**c["architecture"], "norm_eps": float(c["architecture"]["norm_eps"])})
    classifier = ClassifierSpec(
        file=c["file"], url=c["url"], size_bytes=c.get("size_bytes"), backbone=c["backbone"],
        crop_size=int(c["crop_size"]), num_classes=int(c["num_classes"]), global_pool=c.get("global_pool"),
        onnx=c["onnx"], architecture=arch,
    )
    b = data.get("bird_head")
    bird_head = None if b is None else BirdHeadSpec(b["file"], b["url"], int(b["classes"]), int(b["hidden"]))
    t = data["temperatures"]
    temperatures = Temperatures(float(t["single"]), float(t["multi"]), float(t["bird"]), bool(t.get("confirmed", True)))
    detectors = MappingProxyType({
        name: DetectorSpec(
            name=name, file=d["file"], url=d["url"], size=int(d["size"]), conf=float(d["conf"]), onnx=d["onnx"],
            architecture=d["architecture"], mirror_url=d.get("mirror_url"), licence=d.get("licence"),
        )
        for name, d in data["detectors"].items()
    })
    modes = tuple(data["detector_modes"])
    default_mode = data["default_detector_mode"]
    if default_mode not in modes:
        raise ValueError(f"default_detector_mode {default_mode!r} not in detector_modes {modes}")
    languages = tuple(data["languages"])
    labels = _frozen_labels(data["labels"], languages, classifier.num_classes, "labels")
    bird_labels = None
    if bird_head is not None:
        bird_labels = _frozen_labels(data["bird_labels"], languages, bird_head.classes, "bird_labels")
    non_animal = MappingProxyType({
        kind: MappingProxyType({lang: str(data["non_animal"][kind][lang]) for lang in languages})
        for kind in _NON_ANIMAL_KINDS
    })
    licence = data["licence"]
    return ModelCard(
        version=version,
        release_notes=str(data["release_notes"]).strip(),
        licence_weights=licence["weights"],
        licence_code=licence["code"],
        citations=tuple(data.get("citations", ())),
        classifier=classifier,
        bird_head=bird_head,
        temperatures=temperatures,
        threshold=float(data["threshold"]),
        detectors=detectors,
        detector_modes=modes,
        default_detector_mode=default_mode,
        languages=languages,
        labels=labels,
        bird_labels=bird_labels,
        non_animal=non_animal,
    )
