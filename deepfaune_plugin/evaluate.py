"""How well DeepFaune does on the user's own data: its decisions against the human labels the user gives, per
image and per sequence, and for every threshold re-decided from the stored raw outputs (no model runs).

Labels are keys: a class's English label ("red deer"), or "empty", "human", "vehicle"; a decision that stayed
under the threshold is "undefined". Coverage is the share of labelled files that got a label (not undefined);
accuracy is the share of those whose label is the human one. Precision and recall are per class, undefined
counting as a miss for recall and as no prediction for precision. Failed files are left out.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from .api import RunSettings
from .decisions import decide_run
from .errors import DeepfauneError
from .table import escape_formula
from .types import FAILED, UNDEFINED, ClassTable, MediaItem, Problem, RawResult

LEVELS = ("image", "sequence")
THRESHOLDS = tuple(round(0.50 + 0.05 * i, 2) for i in range(10))  # 0.50 .. 0.95
MAX_LABEL_ROWS = 2_000_000
_BIRD = "bird"  # the class the bird option refines (ClassTable.bird_class of every card)


@dataclass(frozen=True)
class Score:
    """One level at one threshold."""

    level: str
    threshold: float
    labelled: int  # files with a human label and a decision
    covered: int  # of those, decided (not undefined)
    correct: int  # of those, the human label

    @property
    def coverage(self) -> float:
        return self.covered / self.labelled if self.labelled else 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.covered if self.covered else 0.0


@dataclass(frozen=True)
class ClassScore:
    level: str
    label: str
    support: int  # files the humans gave this label
    predicted: int  # files DeepFaune gave this label
    correct: int

    @property
    def precision(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.correct / self.support if self.support else None


def label_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, relpath, label text) of each row of a labels CSV with a file column (relpath, file, path or
    filename) and a label column (label, species or prediction); rows lacking either are skipped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = {f.strip().casefold(): f for f in reader.fieldnames or ()}
            file_col = next((fields[c] for c in ("relpath", "file", "path", "filename") if c in fields), None)
            label_col = next((fields[c] for c in ("label", "species", "prediction") if c in fields), None)
            if file_col is None or label_col is None:
                raise ValueError(f"{path}: needs a file column (relpath, file, path or filename) and a label column "
                                 f"(label, species or prediction); found {', '.join(reader.fieldnames or ()) or 'none'}")
            for n, row in enumerate(reader, start=2):
                if n > MAX_LABEL_ROWS:
                    raise ValueError(f"{path}: more than {MAX_LABEL_ROWS:,} rows")
                rel = (row.get(file_col) or "").strip().replace("\\", "/")
                text = (row.get(label_col) or "").strip()
                if rel and text:
                    yield n, rel, text
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read the labels ({err})") from err


def read_labels(path: Path, classes: ClassTable, bird: bool = False,
                unknown: list[str] | None = None) -> tuple[dict[str, str], list[Problem]]:
    """Human labels from a CSV with a file column (relpath, file or path) and a label column (label,
    species or prediction): {relpath: key}, read by the one label rule (`taxonomy.LabelReader`: any language
    of the model or of the taxonomy table, scientific names, accents aside); rows whose label is no class of
    the model, and files listed with labels that disagree, are problems (never the last row silently).
    `unknown`: a list that gets the text of each label naming no class (`deepfaune adapt` learns them)."""
    from .taxonomy import SPECIES_SEPARATORS, LabelReader

    rule = LabelReader(classes, bird)
    found: dict[str, dict[str, list[int]]] = {}  # relpath -> key -> the lines saying it
    texts: dict[str, list[str]] = {}
    problems: list[Problem] = []
    for n, rel, text in label_rows(path):
        key = rule.key(text)
        if key is None:
            if unknown is not None:
                unknown.append(text)
            hint = (" (a list of species in one cell, or a count, is read with --species-lists)"
                    if SPECIES_SEPARATORS.search(text) or ":" in text else "")
            problems.append(Problem(relpath=rel, reason=f"{path.name} line {n}: {text!r} is no label of "
                                                        f"model {classes.version}{hint}", skipped=0))
            continue
        found.setdefault(rel, {}).setdefault(key, []).append(n)
        texts.setdefault(rel, []).append(" ".join(text.split()))  # one line, whatever the cell holds
    labels: dict[str, str] = {}
    for rel, keys in found.items():
        if len(keys) == 1:
            labels[rel] = next(iter(keys))
            continue
        lines = sorted(n for ns in keys.values() for n in ns)
        problems.append(Problem(relpath=rel, reason=f"{path.name} lines {', '.join(map(str, lines))}: listed "
                                                    f"{len(lines)} times with labels that disagree "
                                                    f"({', '.join(sorted(set(texts[rel])))}); left out (several "
                                                    "species in one file are read with --species-lists)",
                                skipped=0))
    return labels, problems


def truth_keys(labels: Mapping[str, str | tuple[str, ...]], classes: ClassTable,
               bird: bool = False, unknown: list[str] | None = None) -> tuple[dict[str, str], list[Problem]]:
    """The labels a source holds (`Manifest.human_labels`: keys or a host's raw text, or several of them for a
    file several rows or observations label) as keys of this model, by the one label rule
    (`taxonomy.LabelReader`: a bird group is bird unless the bird option is on; a label of another model
    version is the class of this one that holds it). Several labels of a file count when they name one key
    after that mapping. Labels naming no class, and files whose labels disagree: problems."""
    from .taxonomy import LabelReader

    rule = LabelReader(classes, bird)
    out: dict[str, str] = {}
    nameless: dict[str, list[str]] = {}
    disagree: list[tuple[str, list[str | None]]] = []
    for rel, value in labels.items():
        several = (value,) if isinstance(value, str) else tuple(value)
        key, named = rule.agreed(str(t) for t in several)
        if key is not None:
            out[rel] = key
        elif len(several) == 1:
            nameless.setdefault(str(several[0]), []).append(rel)
        elif named:
            disagree.append((rel, named))
    problems = [Problem(rels[0], f"human label {text!r} ({len(rels)} file(s), e.g. this one) is no class of model "
                                 f"{classes.version} (nor a taxon of the taxonomy table); left out", skipped=0)
                for text, rels in sorted(nameless.items())]
    if disagree:
        rel, named = disagree[0]
        problems.append(Problem(rel, f"{len(disagree)} file(s), e.g. this one ("
                                     f"{' / '.join(k or 'no class' for k in named)}), have human labels that "
                                     "disagree after mapping to the model's classes; left out", skipped=0))
    if unknown is not None:  # `deepfaune adapt` learns them
        unknown.extend(nameless)
    return out, problems


def _predicted(decision, level: str, human: str = "") -> str:
    key = decision.predictionbase_key if level == "image" else decision.prediction_key
    if human == _BIRD and key.startswith(_BIRD + " "):
        return _BIRD  # "bird passerine" for a person's "bird": the bird option refines what they said
    return key


def score(decisions, truth: Mapping[str, str], level: str, threshold: float) -> tuple[Score, Counter]:
    """The level's score and its confusion counts {(human, predicted): files}."""
    confusion: Counter = Counter()
    for d in decisions:
        human = truth.get(d.relpath)
        if human is None or d.failure is not None or _predicted(d, level) == FAILED:
            continue
        confusion[(human, _predicted(d, level, human))] += 1
    labelled = sum(confusion.values())
    covered = sum(n for (_, p), n in confusion.items() if p != UNDEFINED)
    correct = sum(n for (h, p), n in confusion.items() if h == p)
    return Score(level, threshold, labelled, covered, correct), confusion


def per_class(confusion: Counter, level: str) -> list[ClassScore]:
    labels = sorted({h for h, _ in confusion} | {p for _, p in confusion if p != UNDEFINED})
    out = []
    for label in labels:
        support = sum(n for (h, _), n in confusion.items() if h == label)
        predicted = sum(n for (_, p), n in confusion.items() if p == label)
        out.append(ClassScore(level, label, support, predicted, confusion.get((label, label), 0)))
    return out


def sweep(items: Sequence[MediaItem], raws: Sequence[RawResult], classes: ClassTable, settings: RunSettings,
          truth: Mapping[str, str], thresholds: Sequence[float] = THRESHOLDS) -> list[Score]:
    """Every level's score at every threshold (and the run's), re-decided from `raws` in one block."""
    evaluation = Evaluation(truth, classes, settings, thresholds)
    evaluation.add(items, raws)
    return evaluation.scores()


class Evaluation:
    """The evaluation of a run against human labels, added up block by block (blocks hold whole sequences, so
    a block re-decided alone gives the run's decisions): every level's score at every threshold, and the
    confusion counts at the run's threshold.  Used by `deepfaune evaluate` and by the review page."""

    def __init__(self, truth: Mapping[str, str], classes: ClassTable, settings: RunSettings,
                 thresholds: Sequence[float] = THRESHOLDS):
        self.truth, self.classes, self.settings = dict(truth), classes, settings
        self.thresholds = sorted({round(float(t), 4) for t in thresholds} | {round(float(settings.threshold), 4)})
        self._counts = {(level, t): [0, 0, 0] for t in self.thresholds for level in LEVELS}
        self.confusion: dict[str, Counter] = {level: Counter() for level in LEVELS}
        self.files = 0  # files evaluated (with a raw output), labelled or not

    def add(self, items: Sequence[MediaItem], raws: Mapping[str, RawResult] | Sequence[RawResult]) -> None:
        """One block: its items and their raw outputs (items without one are left out)."""
        by_rel = raws if isinstance(raws, Mapping) else {r.relpath: r for r in raws}
        kept = [item for item in items if item.relpath in by_rel]
        self.files += len(kept)
        if not any(item.relpath in self.truth for item in kept):
            return  # nothing labelled here: its decisions count nowhere
        rows = [by_rel[item.relpath] for item in kept]
        for t in self.thresholds:
            decisions = decide_run(kept, rows, self.classes, replace(self.settings, threshold=t))
            for level in LEVELS:
                found, confusion = score(decisions, self.truth, level, t)
                counts = self._counts[(level, t)]
                counts[0] += found.labelled
                counts[1] += found.covered
                counts[2] += found.correct
                if t == round(float(self.settings.threshold), 4):
                    self.confusion[level].update(confusion)

    def scores(self) -> list[Score]:
        return [Score(level, t, *self._counts[(level, t)]) for t in self.thresholds for level in LEVELS]

    def per_class(self, level: str) -> list[ClassScore]:
        return per_class(self.confusion[level], level)

    @property
    def labelled(self) -> int:
        return self._counts[("image", self.thresholds[0])][0]

    def view(self) -> dict:
        """JSON-ready data for the review page."""
        def ratio(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "threshold": self.settings.threshold,
            "labelled": self.labelled,
            "files": self.files,
            "sweep": [{"level": s.level, "t": s.threshold, "labelled": s.labelled, "covered": s.covered,
                       "correct": s.correct, "coverage": ratio(s.coverage), "accuracy": ratio(s.accuracy)}
                      for s in self.scores()],
            "confusion": {level: [{"human": h, "deepfaune": p, "n": n} for (h, p), n in sorted(c.items())]
                          for level, c in self.confusion.items()},
            "classes": {level: [{"label": c.label, "support": c.support, "predicted": c.predicted,
                                 "correct": c.correct, "precision": ratio(c.precision), "recall": ratio(c.recall)}
                                for c in self.per_class(level)] for level in LEVELS},
        }


def threshold_for(scores: Sequence[Score], target: float, level: str = "sequence") -> Score | None:
    """The lowest threshold (the most files labelled) whose accuracy reaches `target`; None if none does."""
    good = [s for s in scores if s.level == level and s.covered and s.accuracy >= target]
    return min(good, key=lambda s: s.threshold) if good else None


class EvaluationOutputError(DeepfauneError):
    """An evaluation's CSV file that cannot be written (a folder in its place, no room, no right): one line."""


def write_csv(path: Path, header: Sequence[str], rows) -> Path:
    from .atomic import atomic_output

    try:
        with atomic_output(path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                for row in rows:
                    w.writerow([escape_formula(v) if isinstance(v, str) else v for v in row])
    except OSError as err:
        raise EvaluationOutputError(f"{path}: cannot write the evaluation there ({err.strerror or err})") from None
    return path
