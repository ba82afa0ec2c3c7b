"""DeepFaune's results as a MegaDetector batch-output file (format 1.6), the way recognitions reach Timelapse.

What Timelapse needs (its Recognition/*.cs and FileDatabase.cs, 2.5): `info` (without it the
import stops), `detection_categories` "1" animal, "2" person, "3" vehicle, classification
categories whose labels never repeat a detection label, optional taxonomy descriptions
"guid;class;order;family;genus;species;common name", `file` relative to the root, and per
detection `[[category, conf]]` classifications (never null).  Failures are `failure` entries
with `detections: null`.  Videos need `frame_rate` and per-detection `frame_number`.

A video lists the boxes of each distinct frame DeepFaune sampled (a short video's repeated
frames once), each with its `frame_number` and normalised by that frame's size; every animal
frame's selected box carries the video's classification (a video is its own sequence, so both
levels give the same answer).  `frames_processed` (required by format 1.5+) names those frames.

DeepFaune classifies one box per image (the selected one), so only that box carries a
classification; with `--every-animal` (`RunResults.animals`) every other animal box of an image carries its own
(its best class and probability, DeepFaune's rules for that box alone), and the selected box one too where its
file's answer is no animal's; a box too small to classify gets none.  By default DeepFaune's own box carries
the image's *sequence* answer (DeepFaune's `top1` and its
probability, what the DeepFaune GUI reports); `level="image"` gives each image's own answer.
Confidences of classifications are the float32 probability truncated to 3 decimals, so a
probability below the threshold never rounds up to it in Timelapse.  A file a person labelled
(`deepfaune review`) keeps DeepFaune's own classification here (`Decision.machine`): a person's
label is no recognizer output with a confidence; it reaches the .ddb through --field instead.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

import numpy as np

from deepfaune_plugin.api import (__version__, ANIMAL, CATEGORY_NAMES, STANDIN_MARK, TOO_SMALL, UNDEFINED,
                                  AnimalDecision, ClassTable, Decision, Manifest, MediaItem, RawResult, RunResults,
                                  Taxon, animals_by_file, load_card, normalised_box, taxon_for_key)

FORMAT_VERSION = "1.6"
DETECTION_CATEGORIES = {str(k): v for k, v in sorted(CATEGORY_NAMES.items())}  # "1" animal, "2" person, "3" vehicle
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("sequence", "image")


def truncate3(score: float) -> float:
    """int(score * 1000) / 1000 with a float32 product, like DeepFaune's 2-decimal `truncate2`.

    Truncating (not rounding) keeps a probability below a 3-decimal threshold below it in Timelapse.
    """
    return int(np.float32(np.float32(score) * np.float32(1000))) / 1000.0


def _english(classes: ClassTable) -> list[str]:
    return list(classes.names.get("en") or next(iter(classes.names.values())))


def classification_categories(classes: ClassTable, lang: str, bird: bool) -> tuple[dict[str, str], dict[str, str]]:
    """(category id → label in `lang`, English key → category id): the species, then the bird groups."""
    labels = list(classes.labels(lang))
    keys = _english(classes)
    by_key = {key: str(i + 1) for i, key in enumerate(keys)}
    categories = {str(i + 1): label for i, label in enumerate(labels)}
    if bird and classes.bird_names:
        bird_keys = list(classes.bird_names.get("en") or next(iter(classes.bird_names.values())))
        bird_labels = list(classes.bird_names[lang])
        bird_label = labels[keys.index(classes.bird_class)] if classes.bird_class in keys else classes.bird_class
        for j, (key, label) in enumerate(zip(bird_keys, bird_labels)):
            cid = str(len(keys) + j + 1)
            categories[cid] = f"{bird_label} {label}"
            by_key[f"{classes.bird_class} {key}"] = cid
    seen: dict[str, str] = {}
    for cid, label in categories.items():
        if label in seen:
            raise ValueError(f"classification label {label!r} is used twice (categories {seen[label]} and {cid})")
        if label in DETECTION_CATEGORIES.values():
            raise ValueError(f"classification label {label!r} is also a detection category; Timelapse would warn")
        seen[label] = cid
    return categories, by_key


def timelapse_description(t: Taxon) -> str:
    """The MegaDetector/SpeciesNet taxonomy string "guid;class;order;family;genus;species;common name".

    Lowercase like SpeciesNet's; ranks below the taxon's own are empty, so Timelapse's
    "By taxonomy" tree places "mustelid" at the family level.
    """
    parts = [t.guid, t.class_, t.order, t.family, t.genus, t.species, t.vernacular.get("eng", t.key)]
    return ";".join(p.lower() for p in parts)


def category_descriptions(classes: ClassTable, by_key: Mapping[str, str]) -> dict[str, str]:
    """Taxonomy strings for Timelapse's "By taxonomy" tree (empty when a key has no taxon)."""
    out = {}
    for key, cid in by_key.items():
        found = taxon_for_key(key, classes.bird_class)
        out[cid] = "" if found is None else timelapse_description(found)
    return out


def box_classification(decision: Decision, level: str, by_key: Mapping[str, str]) -> tuple[str, float] | None:
    """(category id, confidence) for a file's selected box: its answer at `level` when that is an animal class.

    "bird undefined" (no bird group above the threshold) counts as bird; the confidence is the float32
    probability that `decide_run` pooled, truncated to 3 decimals.
    """
    if level == "image":
        category, key, score = decision.categorybase, decision.top1base_key, decision.raw_scorebase
    else:
        category, key, score = decision.category, decision.top1_key, decision.raw_score
    if category != ANIMAL:
        return None
    key = key.removesuffix(f" {UNDEFINED}")
    return (by_key[key], truncate3(score)) if key in by_key else None


def animal_classification(animal: AnimalDecision, by_key: Mapping[str, str]) -> tuple[str, float] | None:
    """(category id, confidence) for one animal box decided alone (`--every-animal`): its best class, as
    `box_classification` gives a file's; None for a box too small to classify."""
    if animal.key == TOO_SMALL:
        return None
    key = animal.top1_key.removesuffix(f" {UNDEFINED}")
    return (by_key[key], truncate3(animal.raw_score)) if key in by_key else None


def detection_thresholds(version: str, mode: str) -> tuple[float, float]:
    """(typical, conservative) detector thresholds: the highest and lowest confidence that the detectors
    `mode` runs keep (their model card's `conf`); a mode running none of them (existing boxes) reports all."""
    detectors = load_card(version).detectors
    confs = [d.conf for name, d in detectors.items() if name in mode] or [d.conf for d in detectors.values()]
    return max(confs), min(confs)


def build_info(results: RunResults, completed: datetime | None = None) -> dict[str, Any]:
    s = results.settings
    info = results.backend_info or {}
    version = str(info.get("model_version", s.model_version))
    mode = str(info.get("detector_mode", s.detector_mode))
    files = info.get("files") or {}
    detector_files = ", ".join(v.get("file", "") for k, v in sorted(files.items()) if k.startswith("detector"))
    classifier_file = (files.get("classifier") or {}).get("file", "")
    standin = f" [{STANDIN_MARK}]" if results.standin else ""
    head = f"; adapted head {results.head}" if results.head else ""  # `run --adapted`: Info.classifier says it
    when = (completed or results.finished or datetime.now()).strftime(TIME_FORMAT)
    typical, conservative = detection_thresholds(version, mode)
    return {
        "format_version": FORMAT_VERSION,
        "detector": f"DeepFaune {version} detector, mode {mode}" + (f" ({detector_files})" if detector_files else "")
                    + standin,
        "detection_completion_time": when,
        "classifier": f"DeepFaune {version} classifier" + (f" ({classifier_file})" if classifier_file else "")
                      + head + standin,
        "classification_completion_time": when,
        "detector_metadata": {
            "megadetector_version": f"deepfaune-{version}-{mode}",
            "typical_detection_threshold": typical,
            "conservative_detection_threshold": conservative,
        },
        "classifier_metadata": {"typical_classification_threshold": float(s.threshold)},
        "deepfaune": {  # provenance; Timelapse and MegaDetector tools ignore unknown info keys
            "plugin_version": __version__,
            "backend": info.get("backend", s.backend),
            "model_version": version,
            "detector_mode": mode,
            "threshold": s.threshold,
            "maxlag": s.maxlag,
            "language": s.lang,
            "exclude": list(s.exclude),
            "bird": s.bird,
            "files": files,
            **({"adapted_head": results.head} if results.head else {}),
        },
    }


def _detections(raw: RawResult, classification: tuple[str, float] | None, frame_number: int | None = None,
                per_box: Mapping[int, tuple[str, float]] | None = None) -> list[dict[str, Any]]:
    """One image's (or video frame's) boxes; its selected box, when an animal, gets `classification`, and each
    box `per_box` names (detection index -> its own, `--every-animal`) its own (the selected box only when
    `classification` is None)."""
    per_box = per_box or {}
    out: list[dict[str, Any]] = []
    if raw.width <= 0 or raw.height <= 0:
        return out
    for index, det in enumerate(raw.detections):
        entry: dict[str, Any] = {
            "category": str(det.category),
            "conf": float(round(float(det.conf), 3)),
            "bbox": list(normalised_box(det.box, raw.width, raw.height, decimals=4, clamp="values")),
        }
        own = classification if index == raw.selected and det.category == ANIMAL else None
        if own is None and det.category == ANIMAL:
            own = per_box.get(index)
        if own is not None:
            entry["classifications"] = [[own[0], float(own[1])]]
        if frame_number is not None:
            entry["frame_number"] = frame_number
        out.append(entry)
    return out


def video_frames(raw: RawResult) -> dict[int, RawResult]:
    """Frame number -> result of each distinct decoded frame of a video, in frame order (repeats once)."""
    if not raw.frames:  # a backend without frames: the video's own result stands for its key frame
        return {} if raw.failure else {int(raw.frame_number or 0): raw}
    seen: dict[int, RawResult] = {}
    for frame in raw.frames:
        if frame.failure is None and frame.frame_number is not None:
            seen.setdefault(int(frame.frame_number), frame)
    return {n: seen[n] for n in sorted(seen)}


def image_entry(item: MediaItem, raw: RawResult, classification: tuple[str, float] | None,
                per_box: Mapping[int, tuple[str, float]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": item.relpath}
    frames = video_frames(raw) if item.is_video else None
    if raw.failure is not None:
        entry["failure"] = raw.failure
        entry["detections"] = None
    elif frames is not None:
        entry["detections"] = [d for number, frame in frames.items() for d in _detections(frame, classification, number)]
    else:
        entry["detections"] = _detections(raw, classification, per_box=per_box)
    if frames is not None:
        entry["frame_rate"] = float(raw.frame_rate) if raw.frame_rate else 0.0  # unknown: Timelapse keeps no box
        entry["frames_processed"] = list(frames)
    return entry


def build_recognitions(manifest: Manifest, results: RunResults, level: str = "sequence") -> dict[str, Any]:
    """The whole recognition file as a dict (json.dump it)."""
    if level not in LEVELS:
        raise ValueError(f"classification level must be one of {', '.join(LEVELS)}, got {level!r}")
    s = results.settings
    categories, by_key = classification_categories(results.classes, s.lang, s.bird)
    decided = {d.relpath: d for d in results.decisions}
    boxes = animals_by_file(results.animals)
    images = []
    for item in sorted(manifest.items, key=lambda it: it.relpath):
        raw = results.raw.get(item.relpath)
        if raw is None:
            continue
        decision = decided.get(item.relpath)
        if decision is not None and decision.machine is not None:  # a person's label is no machine classification
            decision = decision.machine
        answer = None if decision is None else box_classification(decision, level, by_key)
        per_box = {a.index: c for a in boxes.get(item.relpath, ()) if (c := animal_classification(a, by_key))}
        images.append(image_entry(item, raw, answer, per_box))
    return {
        "info": build_info(results),
        "detection_categories": dict(DETECTION_CATEGORIES),
        "classification_categories": categories,
        "classification_category_descriptions": category_descriptions(results.classes, by_key),
        "images": images,
    }
