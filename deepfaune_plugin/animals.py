"""`--every-animal`: DeepFaune's rules applied to each animal box alone, then counted per sequence.

DeepFaune decides one box per image; here every animal box it keeps is a row of its own, decided exactly as an
image whose only row is that box (`decisions.decide_group`: temperature for one row, threshold, `--exclude`, the
bird head).  A box whose crop is too small to classify (`engine.crop.too_small`) is named `TOO_SMALL`, even the
image's own box, whose logits DeepFaune's columns still use.  Per sequence, each key gets MaxN (the most boxes of
it in one image) and the number of images that hold it.  The image's own decision is never touched.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from typing import Mapping, Sequence

from .contracts import RunSettings
from .boxes import normalised_box
from .decisions import decide_group
from .engine.crop import square_box, too_small
from .types import TOO_SMALL, AnimalDecision, AnimalLogits, ClassTable, Decision, RawResult

BOX_DECIMALS = 6  # as the result table's bbox columns


def decide_box(raw: RawResult, animal: AnimalLogits, seqnum: int, classes: ClassTable,
               settings: RunSettings) -> AnimalDecision:
    """One animal box of `raw` decided alone (its sequence's counts are filled by `count_per_sequence`)."""
    det = raw.detections[animal.index]
    def decided(key: str, label: str, score: float, raw_score: float, top1_key: str, top1: str) -> AnimalDecision:
        return AnimalDecision(relpath=raw.relpath, seqnum=seqnum, index=animal.index, box=det.box,
                              normalised=normalised_box(det.box, raw.width, raw.height, decimals=BOX_DECIMALS),
                              conf=det.conf, source=det.source, selected=animal.index == raw.selected, key=key,
                              label=label, score=score, raw_score=raw_score, top1_key=top1_key, top1=top1)

    if animal.logits is None or too_small(square_box(det.box, raw.width, raw.height)):
        return decided(TOO_SMALL, TOO_SMALL, 0.0, 0.0, "", "")
    row = RawResult(relpath=raw.relpath, width=raw.width, height=raw.height, detections=[det], selected=0,
                    logits=animal.logits, bird_logits=animal.bird_logits)
    group = decide_group([row], classes, settings.threshold, settings.lang, settings.exclude, settings.bird)
    return decided(group.key, group.label, group.score, group.raw_score, group.top1_key, group.top1)


def decide_animals(raws: Mapping[str, RawResult], decisions: Sequence[Decision], classes: ClassTable,
                   settings: RunSettings) -> list[AnimalDecision]:
    """Every animal box of whole sequences, in the decisions' order (seqnum, file) then the detector's (by
    confidence).  Files without per-box outputs (failed, videos, a backend that computes none) have no rows."""
    rows: list[AnimalDecision] = []
    for decision in decisions:
        raw = raws.get(decision.relpath)
        if raw is None or raw.failure is not None or not raw.animals:
            continue
        rows.extend(decide_box(raw, animal, decision.seqnum, classes, settings) for animal in raw.animals)
    return count_per_sequence(rows)


def count_per_sequence(rows: Sequence[AnimalDecision]) -> list[AnimalDecision]:
    """Each row with its key's MaxN and image count in its sequence."""
    per_image: dict[tuple[int, str], Counter] = defaultdict(Counter)
    for row in rows:
        per_image[(row.seqnum, row.key)][row.relpath] += 1
    return [replace(row, maxn=max(per_image[(row.seqnum, row.key)].values()),
                    images=len(per_image[(row.seqnum, row.key)])) for row in rows]


def animals_by_file(animals: Sequence[AnimalDecision] | None) -> dict[str, list[AnimalDecision]]:
    """relpath -> its animal boxes, in the detector's order: how the hosts that hold several animals per file
    (per detection, per box, per species) find a file's boxes.  Empty when `--every-animal` is off (None)."""
    out: dict[str, list[AnimalDecision]] = defaultdict(list)
    for animal in animals or ():
        out[animal.relpath].append(animal)
    return dict(out)


def species_in_file(boxes: Sequence[AnimalDecision]) -> dict[str, list[AnimalDecision]]:
    """key -> the file's boxes of that key, keys in order of their first box (the most confident first): one
    entry per species a file shows, its count the length of its list."""
    out: dict[str, list[AnimalDecision]] = {}
    for box in boxes:
        out.setdefault(box.key, []).append(box)
    return out


def box_entries(rows: Sequence[AnimalDecision]) -> list[dict]:
    """One file's animal boxes as the review page and `deepfaune review` draw them: the box (x, y, width,
    height fractions, top-left origin), its label and key, its score, and `df` for DeepFaune's own box."""
    return [{"b": list(a.normalised), "l": a.label, "k": a.key, "s": a.score, **({"df": 1} if a.selected else {})}
            for a in rows]


def species_entries(rows: Sequence[AnimalDecision]) -> list[dict]:
    """One sequence's labels from its boxes (`count_per_sequence` done): label, key, MaxN and images, the
    species first (most animals first), then undefined, then too small."""
    seen: dict[str, AnimalDecision] = {}
    for a in rows:
        seen.setdefault(a.key, a)
    def rank(a: AnimalDecision) -> tuple:
        return (a.key == TOO_SMALL, a.key == "undefined" or a.key.endswith(" undefined"), -a.maxn, a.label)
    return [{"l": a.label, "k": a.key, "maxn": a.maxn, "images": a.images} for a in sorted(seen.values(), key=rank)]
