"""Repeated false detections (`deepfaune run --drop-repeats`): a fixed object boxed at one place in many images.

A branch, a rock or a post that the detector takes for an animal is boxed at the same place in image after image
of one camera; it is the commonest source of wrong "animals" (MegaDetector's tools offer "repeat detection
elimination" for it).  Here an **animal** box is a *repeat* when at least `RunSettings.repeat_min_images` images of
its station (its own image included) hold an animal box whose intersection over union with it is at least
`RunSettings.repeat_iou`.  Boxes are compared as fractions of their image, so a camera whose resolution changed
still matches.  A station is `MediaItem.station` and `camera` where the host knows them, else the folder group
(`MediaItem.group`).  Videos and failed files are left as they are.

The run surveys every image's boxes first (`RepeatSurvey`: a few numbers per animal box, not the raw outputs),
then decides as usual with the repeats set aside (`Repeats.set_aside`): they no longer count for the image's box,
label or count, and the file's `warning` says how many were set aside.  When the box DeepFaune classified was a
repeat and another animal box is left, that box has no classifier output yet: `known_box` states it as a box the
host supplied (detector mode "existing"), which the backend classifies as DeepFaune classifies a MegaDetector
file's box.  Nothing is set aside when the option is off: this module is not even imported.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .types import ANIMAL, PERSON, REPEAT_RESTORE, KnownBox, MediaItem, RawResult, RepeatDecision

#: How the review page and the record name a station made of a host's station and camera ids.
_SEP = " / "


def station_name(item: MediaItem) -> str:
    """The place a fixed object stays put: the host's station and camera where it knows them, else the folder."""
    if item.station or item.camera:
        return _SEP.join(str(part) for part in (item.station, item.camera) if part)
    return item.group


def _station_key(item: MediaItem) -> tuple[str, str, str]:
    # the folder group apart from the host's ids, so that a folder named like a station is another place
    if item.station or item.camera:
        return (str(item.station or ""), str(item.camera or ""), "")
    return ("", "", item.group)


def repeat_note(n: int) -> str:
    """The `warning` column's words for a file with `n` boxes set aside."""
    return f"{n} animal box set aside as a repeat" if n == 1 else f"{n} animal boxes set aside as repeats"


@dataclass(frozen=True)
class RepeatGroup:
    """One fixed object of a station: the boxes set aside at one place, as the review page shows them.

    `box` is the representative box as fractions (x1, y1, x2, y2) of `relpath`'s image (`width` x `height`
    pixels, read from `path`; `people`: its person boxes in pixels, which a page with blurring blurs); `files`
    are the images where a box of this place was set aside (`images` of them); `members`: those boxes, as
    (relpath, index into its detections), what a person's restore gives back (`Repeats.honour`).
    """

    station: str
    box: tuple[float, float, float, float]
    relpath: str
    path: Path
    width: int
    height: int
    files: tuple[str, ...]
    people: tuple[tuple[float, float, float, float], ...] = ()
    members: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)

    @property
    def images(self) -> int:
        return len(self.files)

    @property
    def pixel_box(self) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 * self.width, y1 * self.height, x2 * self.width, y2 * self.height)


@dataclass
class _Station:
    name: str
    images: list[tuple[str, Path, int, int, tuple]] = field(default_factory=list)  # relpath, path, w, h, people
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # fractions x1, y1, x2, y2
    image: list[int] = field(default_factory=list)  # index into images, per box
    index: list[int] = field(default_factory=list)  # index into the file's detections, per box


class RepeatSurvey:
    """The animal boxes of every image, by station, gathered as the run's first pass goes by (about 60 bytes a
    box and a path per image with an animal box: a season's raw outputs are not held)."""

    def __init__(self, iou: float, min_images: int):
        self.iou, self.min_images = float(iou), int(min_images)
        self.stations: dict[tuple[str, str, str], _Station] = {}

    def add(self, item: MediaItem, raw: RawResult) -> None:
        if raw.failure is not None or raw.frames or item.is_video or not raw.width or not raw.height:
            return
        animal = [(i, d) for i, d in enumerate(raw.detections) if d.category == ANIMAL]
        if not animal:
            return
        key = _station_key(item)
        station = self.stations.get(key)
        if station is None:
            station = self.stations[key] = _Station(station_name(item))
        people = tuple(tuple(float(v) for v in d.box) for d in raw.detections if d.category == PERSON)
        station.images.append((raw.relpath, Path(item.path), raw.width, raw.height, people))
        n = len(station.images) - 1
        for i, det in animal:
            x1, y1, x2, y2 = (float(v) for v in det.box)
            station.boxes.append((x1 / raw.width, y1 / raw.height, x2 / raw.width, y2 / raw.height))
            station.image.append(n)
            station.index.append(i)

    def finish(self) -> "Repeats":
        """The repeats of every station, grouped by place."""
        aside: dict[str, set[int]] = defaultdict(set)
        groups: list[RepeatGroup] = []
        for key in sorted(self.stations):
            station = self.stations[key]
            boxes = np.asarray(station.boxes, dtype=np.float64).reshape(-1, 4)
            image = np.asarray(station.image, dtype=np.int64)
            seen = images_at_place(boxes, image, self.iou)
            flagged = np.flatnonzero(seen >= self.min_images)
            for b in flagged:
                aside[station.images[image[b]][0]].add(station.index[b])
            groups.extend(self._groups(station, boxes, image, flagged, seen))
        return Repeats(dict(aside), groups)

    def _groups(self, station: _Station, boxes: np.ndarray, image: np.ndarray, flagged: np.ndarray,
                seen: np.ndarray) -> list[RepeatGroup]:
        """Flagged boxes gathered around the most repeated one, then the most repeated one left, and so on."""
        left = sorted(flagged.tolist(), key=lambda b: (-seen[b], image[b], b))
        groups = []
        while left:
            rep = left[0]
            rest = np.asarray(left, dtype=np.int64)
            members = rest[iou(boxes[rep], boxes[rest]) >= self.iou]
            members = np.union1d(members, [rep])
            relpath, path, width, height, people = station.images[image[rep]]
            files = tuple(sorted({station.images[image[b]][0] for b in members}))
            boxes_of = tuple(sorted((station.images[image[b]][0], station.index[b]) for b in members))
            groups.append(RepeatGroup(station.name, tuple(float(v) for v in boxes[rep]), relpath, path,  # type: ignore[arg-type]
                                      width, height, files, people, boxes_of))
            taken = set(members.tolist())
            left = [b for b in left if b not in taken]
        return groups


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (x1, y1, x2, y2) with each of `boxes`; 0 for boxes without area."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def images_at_place(boxes: np.ndarray, image: np.ndarray, threshold: float) -> np.ndarray:
    """For each box, how many images (its own included) hold a box with IoU >= threshold with it.

    Two boxes with IoU >= t have widths within a factor t of each other and left edges at most (1 - t) times the
    wider apart, so only boxes whose left edge lies within (1 - t) / t of this box's width are compared: a station
    of many small boxes costs far less than every pair.
    """
    n = len(boxes)
    seen = np.zeros(n, dtype=np.int64)
    if not n:
        return seen
    order = np.argsort(boxes[:, 0], kind="stable")
    lefts = boxes[order, 0]
    reach = (1.0 - threshold) / threshold
    for b in range(n):
        width = max(boxes[b, 2] - boxes[b, 0], 0.0)
        lo = np.searchsorted(lefts, boxes[b, 0] - reach * width - 1e-12, side="left")
        hi = np.searchsorted(lefts, boxes[b, 0] + reach * width + 1e-12, side="right")
        near = order[lo:hi]
        match = near[iou(boxes[b], boxes[near]) >= threshold]
        seen[b] = len(np.unique(image[match])) if len(match) else 1
    return seen


@dataclass
class Repeats:
    """What the survey found: the detections set aside in each file (relpath -> indices into its detections) and
    the places they were at (`groups`, by station)."""

    aside: dict[str, set[int]]
    groups: list[RepeatGroup]

    @property
    def boxes(self) -> int:
        return sum(len(indices) for indices in self.aside.values())

    def apply(self, items: list[MediaItem], raws: list[RawResult],
              classify: Callable[[list[MediaItem]], list[RawResult | None]]) -> list[RawResult]:
        """`raws` (of `items`, in order) with the repeats set aside; the boxes left to classify go to `classify`
        at once, as items with that box given (`known_box`), which answers each (None: no output)."""
        out: list[RawResult] = []
        pending: list[tuple[int, MediaItem, int]] = []
        for item, raw in zip(items, raws):
            kept, index = self.set_aside(raw)
            if index is not None:
                pending.append((len(out), item, index))
            out.append(kept)
        if pending:
            classified = classify([replace(item, known_boxes=(known_box(out[n], index),))
                                   for n, item, index in pending])
            for (n, item, index), result in zip(pending, classified):
                out[n] = with_box_classified(out[n], index, result)
        return out

    def honour(self, decisions: list[RepeatDecision], threshold: float) -> tuple["Repeats", list[RepeatGroup]]:
        """These repeats with the places people restored given back (their boxes count again, and the file's
        box is chosen and classified as DeepFaune would), and the restored places.  A place confirmed, or not
        looked at, stays aside."""
        restored = [g for g in self.groups if (d := decision_for(g, decisions, threshold)) is not None
                    and d.decision == REPEAT_RESTORE]
        if not restored:
            return self, []
        aside = {rel: set(indices) for rel, indices in self.aside.items()}
        for group in restored:
            for rel, index in group.members:
                aside.get(rel, set()).discard(index)
        taken = {id(g) for g in restored}
        return Repeats({rel: s for rel, s in aside.items() if s},
                       [g for g in self.groups if id(g) not in taken]), restored

    def set_aside(self, raw: RawResult) -> tuple[RawResult, int | None]:
        """`raw` without its repeats, and the index (into the new detections) of an animal box left to classify
        when the box DeepFaune classified was a repeat (its logits are then None), else None.

        The box kept is chosen by DeepFaune's rule among the boxes left: the most confident animal box, else the
        most confident box of any category (the first on ties); in detector mode "existing" DeepFaune's
        MegaDetector-file rule, the most confident box of any category.
        """
        indices = self.aside.get(raw.relpath)
        if not indices or raw.failure is not None:
            return raw, None
        kept = [d for i, d in enumerate(raw.detections) if i not in indices]
        out = replace(raw, detections=kept, warnings=[*raw.warnings, repeat_note(len(indices))])
        if raw.animals is not None:  # --every-animal: each box's outputs follow it to its new index
            moved = {old: new for new, old in enumerate(i for i in range(len(raw.detections)) if i not in indices)}
            out.animals = [replace(a, index=moved[a.index]) for a in raw.animals if a.index in moved]
        if raw.selected is not None and raw.selected not in indices:
            out.selected = raw.selected - sum(1 for i in indices if i < raw.selected)
            return out, None
        out.logits = out.bird_logits = None
        out.selected = _best(kept, any_category=bool(kept) and kept[0].source == "existing")
        if out.selected is not None and kept[out.selected].category == ANIMAL:
            return out, out.selected
        return out, None


def decision_for(group: RepeatGroup, decisions: list[RepeatDecision], threshold: float) -> RepeatDecision | None:
    """The decision that holds for `group`'s place: of its station's decisions whose box lies at the place (the
    run's own overlap rule, so a season that gained images still finds it), the latest."""
    here = [d for d in decisions if d.station == group.station]
    if not here:
        return None
    overlap = iou(np.asarray(group.box, dtype=np.float64), np.asarray([d.box for d in here], dtype=np.float64))
    found = [d for d, o in zip(here, overlap) if o >= threshold - 1e-9]
    return max(found, key=lambda d: (d.at, d.reviewer), default=None)


def _best(detections, any_category: bool) -> int | None:
    pool = [i for i, d in enumerate(detections) if any_category or d.category == ANIMAL] or range(len(detections))
    return max(pool, key=lambda i: (detections[i].conf, -i), default=None)


def known_box(raw: RawResult, index: int) -> KnownBox:
    """Detection `index` of `raw` as a box the host supplied (fractions of the image), for its classification."""
    det = raw.detections[index]
    x1, y1, x2, y2 = (float(v) for v in det.box)
    return KnownBox(x1 / raw.width, y1 / raw.height, (x2 - x1) / raw.width, (y2 - y1) / raw.height,
                    float(det.conf), det.category)


def with_box_classified(raw: RawResult, index: int, classified: RawResult | None) -> RawResult:
    """`raw` (its repeats set aside) with the logits of its box `index`, from a run on that box alone; a file
    whose box could not be classified fails with the reason (never a label guessed from the repeat's outputs)."""
    if classified is None or classified.failure is not None or classified.logits is None:
        why = classified.failure if classified is not None and classified.failure else "no classifier output"
        return RawResult(relpath=raw.relpath, failure=f"the animal box left once repeats were set aside could not be "
                                                       f"classified: {why}", warnings=list(raw.warnings))
    return replace(raw, selected=index, logits=classified.logits, bird_logits=classified.bird_logits)


class RepeatRun:
    """A run's raw outputs with the repeats set aside: a first pass computes (or finds) every file's outputs and
    surveys their boxes, keeping only the list of files; the second gives each chunk's outputs again from the
    result store (the run's own first pass put them there) with the repeats set aside.  Without a store (or a
    backend that stores nothing) the first pass's outputs are held in memory instead; failed files always are
    (the store keeps none).  The boxes left to classify go through the backend in detector mode "existing",
    whose outputs the store keeps like any others."""

    def __init__(self, inference, backend, settings, store, log):
        self.inference, self.backend, self.settings, self.store, self.log = inference, backend, settings, store, log
        self.held: dict[str, RawResult] = {}
        self.repeats = Repeats({}, [])
        self.boxes = None  # the Inference that classifies the boxes left, opened when one is

    def survey(self, blocks) -> list[list[MediaItem]]:
        """The first pass over `blocks` (chunks of whole sequences); returns them for the second."""
        survey = RepeatSurvey(self.settings.repeat_iou, self.settings.repeat_min_images)
        holds_all = self.store is None or not self.inference.stores
        seen = []
        for chunk in blocks:
            for item, raw in zip(chunk, self.inference.raws(chunk)):
                survey.add(item, raw)
                if holds_all or raw.failure is not None:
                    self.held[item.relpath] = raw
            seen.append(chunk)
        self.repeats = survey.finish()
        if self.store is not None:  # the places a person restored in `deepfaune review` count again
            self.repeats, restored = self.repeats.honour(self.store.repeat_decisions(), self.settings.repeat_iou)
            if restored:
                self.log(f"--drop-repeats: {len(restored)} place(s) restored in `deepfaune review` count again "
                         f"({sum(len(g.members) for g in restored)} animal boxes)")
        self.inference.unload()  # the second pass reads the store; the boxes left load the models they need
        self.log(f"--drop-repeats: {self.repeats.boxes} animal boxes set aside as repeats, at "
                 f"{len(self.repeats.groups)} places (IoU >= {self.settings.repeat_iou:g} in at least "
                 f"{self.settings.repeat_min_images} images of a station)")
        return seen

    def raws(self, chunk: list[MediaItem]) -> list[RawResult]:
        """The chunk's outputs (in its order, dated) with the repeats set aside."""
        found = self.inference.stored([item for item in chunk if item.relpath not in self.held])
        found.update((item.relpath, self.held.pop(item.relpath)) for item in chunk if item.relpath in self.held)
        missing = [item for item in chunk if item.relpath not in found]  # changed since the first pass
        if missing:
            found.update(zip((item.relpath for item in missing), self.inference.raws(missing)))
        return self.repeats.apply(chunk, [found[item.relpath] for item in chunk], self._classify)

    def _classify(self, items: list[MediaItem]) -> list[RawResult | None]:
        from .contracts import EXISTING_DETECTIONS
        from .inference import Inference

        if self.boxes is None:
            settings = replace(self.settings, detector_mode=EXISTING_DETECTIONS)
            self.boxes = Inference(self.backend, settings, self.store, None, False, self.log)
        return self.boxes.raws(items)

    def close(self) -> None:
        if self.boxes is not None:
            boxes, self.boxes = self.boxes, None
            boxes.close()
