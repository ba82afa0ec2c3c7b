"""Per-species scores (`deepfaune evaluate --species-lists`): every animal box's label against the species list
people gave each file.

People's lists come from a labels CSV (several rows per file, or one cell "fox:2;badger") or the source's own
labels, read by the one label rule (`taxonomy.LabelReader.species_list`); a name without a count is one animal,
a species named in several rows of a file adds up.  DeepFaune's side is `--every-animal`'s: each animal box of a
file decided alone at the chosen threshold (`animals.decide_animals`), so its outputs must be stored per box.

Presence, per file and per sequence: a species is present where at least one box (DeepFaune) or the list
(people) names it; precision and recall per species of "present".  "empty", "human" and "vehicle" name no
species (a list of only those is a file without any), nor do undefined or too-small boxes.  A sequence is
scored over its labelled files only, so both sides look at the same images.

MaxN, per sequence and species present on either side: the most animals of it in one image, DeepFaune's
(boxes) against the people's (their counts); the mean absolute error and the share where they match exactly.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .animals import decide_animals
from .api import RunSettings
from .decisions import decide_run
from .evaluate import ClassScore, label_rows
from .inference import has_animals
from .types import TOO_SMALL, UNDEFINED, ClassTable, MediaItem, Problem, RawResult

NOT_SPECIES = frozenset({"empty", "human", "vehicle", UNDEFINED, TOO_SMALL})
PRESENCE_LEVELS = ("image", "sequence")
ALL = "(all species)"

SpeciesCounts = Mapping[str, int]  # species key -> animals of it in one file


def species_of(counts: Mapping[str, int]) -> dict[str, int]:
    """The species a list or a file's boxes name, without the keys that are no species."""
    return {key: n for key, n in counts.items() if key not in NOT_SPECIES and not key.endswith(" " + UNDEFINED)}


def read_species_lists(path: Path, classes: ClassTable, bird: bool = False) -> tuple[dict[str, dict[str, int]],
                                                                                    list[Problem]]:
    """{relpath: {key: animals}} from a labels CSV whose rows of one file, and cells ("fox:2;badger"), add up;
    the parts naming no class are problems (the rest of the file's list still counts)."""
    from .taxonomy import LabelReader

    rule = LabelReader(classes, bird)
    lists: dict[str, dict[str, int]] = {}
    problems: list[Problem] = []
    for n, rel, text in label_rows(path):
        counts, unknown = rule.species_list(text)
        for part in unknown:
            problems.append(Problem(rel, f"{path.name} line {n}: {part!r} is no label of model {classes.version} "
                                         "(or its count is no whole number from 1 up)", skipped=0))
        mine = lists.setdefault(rel, {})
        for key, count in counts.items():
            mine[key] = mine.get(key, 0) + count
    return lists, problems


def held_species_lists(labels: Mapping[str, str | tuple[str, ...]], classes: ClassTable,
                       bird: bool = False) -> tuple[dict[str, dict[str, int]], list[Problem]]:
    """The source's own labels (`Manifest.human_labels`: one text, or several for several rows or observations
    of a file) as species lists, the same way."""
    from .taxonomy import LabelReader

    rule = LabelReader(classes, bird)
    lists: dict[str, dict[str, int]] = {}
    problems: list[Problem] = []
    for rel, value in labels.items():
        mine = lists.setdefault(rel, {})
        for text in ((value,) if isinstance(value, str) else tuple(value)):
            counts, unknown = rule.species_list(str(text))
            problems.extend(Problem(rel, f"human label {part!r} is no class of model {classes.version}; left out",
                                    skipped=0) for part in unknown)
            for key, count in counts.items():
                mine[key] = mine.get(key, 0) + count
    return lists, problems


def single_labels(lists: Mapping[str, Mapping[str, int]]) -> dict[str, str]:
    """The files whose list names one label: the single-label evaluation's truth (the others are left out of it)."""
    return {rel: next(iter(counts)) for rel, counts in lists.items() if len(counts) == 1}


@dataclass
class MaxNScore:
    """One species (or ALL): sequences where either side saw it, and how far DeepFaune's MaxN is from theirs."""

    species: str
    sequences: int = 0
    exact: int = 0
    error: int = 0  # the sum of |DeepFaune's MaxN - people's MaxN|

    @property
    def mae(self) -> float | None:
        return self.error / self.sequences if self.sequences else None

    @property
    def exact_rate(self) -> float | None:
        return self.exact / self.sequences if self.sequences else None


class SpeciesEvaluation:
    """Per-species presence and MaxN, added up block by block (whole sequences each) at the run's threshold."""

    def __init__(self, lists: Mapping[str, Mapping[str, int]], classes: ClassTable, settings: RunSettings):
        self.lists = {rel: species_of(counts) for rel, counts in lists.items()}
        self.classes, self.settings = classes, settings
        self.presence: dict[tuple[str, str], list[int]] = {}  # (level, species) -> [people, DeepFaune, both]
        self.maxn: dict[str, MaxNScore] = {}
        self.files = 0  # labelled files scored (with per-box outputs)
        self.sequences = 0
        self.without_boxes: list[str] = []  # labelled files whose stored outputs hold no per-box outputs

    def add(self, items: Sequence[MediaItem], raws: Mapping[str, RawResult]) -> None:
        labelled = [item for item in items if item.relpath in self.lists and item.relpath in raws]
        if not labelled:
            return
        boxed = {item.relpath for item in labelled if self._boxed(raws[item.relpath])}
        self.without_boxes.extend(item.relpath for item in labelled if item.relpath not in boxed)
        kept = [item for item in items if item.relpath in raws]
        rows = [raws[item.relpath] for item in kept]
        decisions = decide_run(kept, rows, self.classes, self.settings)
        animals = decide_animals({r.relpath: r for r in rows}, decisions, self.classes, self.settings)
        boxes: dict[str, Counter] = defaultdict(Counter)
        for a in animals:
            boxes[a.relpath][a.key] += 1
        members: dict[int, list[str]] = defaultdict(list)
        for d in decisions:
            if d.relpath in boxed and d.failure is None:
                members[d.seqnum].append(d.relpath)
        for seqnum in sorted(members):
            files = members[seqnum]
            theirs = [self.lists[rel] for rel in files]
            mine = [species_of(boxes.get(rel, Counter())) for rel in files]
            for people, deepfaune in zip(theirs, mine):
                self._presence("image", people, deepfaune)
            self._presence("sequence", _union(theirs), _union(mine))
            self._maxn(_maxima(mine), _maxima(theirs))
            self.files += len(files)
            self.sequences += 1

    def _boxed(self, raw: RawResult) -> bool:
        return raw.failure is None and not raw.frames and has_animals(raw) and raw.animals is not None

    def _presence(self, level: str, people: Iterable[str], deepfaune: Iterable[str]) -> None:
        people, deepfaune = set(people), set(deepfaune)
        for species in people | deepfaune:
            counts = self.presence.setdefault((level, species), [0, 0, 0])
            counts[0] += species in people
            counts[1] += species in deepfaune
            counts[2] += species in people and species in deepfaune

    def _maxn(self, deepfaune: Mapping[str, int], people: Mapping[str, int]) -> None:
        for species in set(deepfaune) | set(people):
            mine, theirs = deepfaune.get(species, 0), people.get(species, 0)
            for name in (species, ALL):
                score = self.maxn.setdefault(name, MaxNScore(name))
                score.sequences += 1
                score.exact += mine == theirs
                score.error += abs(mine - theirs)

    def presence_scores(self) -> list[ClassScore]:
        """Per level and species: the files (or sequences) where people, DeepFaune, and both say it is present
        (`support`, `predicted`, `correct`), with the precision and recall of "present"."""
        return [ClassScore(level, species, *self.presence[(level, species)])
                for level, species in sorted(self.presence, key=lambda k: (PRESENCE_LEVELS.index(k[0]), k[1]))]

    def maxn_scores(self) -> list[MaxNScore]:
        """Per species, then ALL (every species-sequence pair together)."""
        return [self.maxn[k] for k in sorted(self.maxn, key=lambda k: (k == ALL, k))]


def _union(lists: Iterable[Mapping[str, int]]) -> set[str]:
    return {key for counts in lists for key in counts}


def _maxima(lists: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Per species, the most animals of it in one file of the sequence (MaxN)."""
    out: dict[str, int] = {}
    for counts in lists:
        for key, n in counts.items():
            out[key] = max(out.get(key, 0), n)
    return out
