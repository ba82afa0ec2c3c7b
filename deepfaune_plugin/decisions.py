"""DeepFaune's decision logic as pure functions: raw outputs + settings → labels and scores.

Reproduces `PredictorBase.__averageLogitInSequence` of DeepFaune 1.4.1 (predictTools.py) for a
group of rows (one image, a sequence, a video's frames):

1. every row empty → "empty", 1.0;
2. any animal row → mean of the animal rows' logits over the non-excluded species, divided by
   the temperature (single / multi by the number of animal rows), softmax; best class and its
   probability.  Bird option: when that class is the bird class with score >= threshold, the
   8 bird logits go through the same steps (bird temperature); a bird score >= threshold turns
   the label into "bird <subclass>", otherwise it stays "bird undefined" (DeepFaune renames the
   bird class so when the option is on);
3. otherwise human when #human rows >= #vehicle rows, else vehicle, 1.0;
4. "undefined" when score < threshold; the score is truncated (not rounded) to 2 decimals and
   top1 is the best class whatever the threshold.

Arithmetic is float32 end to end, as DeepFaune does on NumPy >= 2 (its logits live in a
float32 array and NEP 50 keeps Python scalars weak): float32 mean and temperature division,
float32 exp, a left-to-right float32 sum, float32 division, the threshold compared as float32,
and `int(score * 100) / 100` with a float32 product.  That is what decides on which side of a
2-decimal or threshold boundary a score falls.

A video stands for its frames wherever it is a row (PredictorVideo pools a video's 12 frames
exactly as a sequence, repeated frames counted each time); its key frame is `key_frame`.

Failed rows (`RawResult.failure`) are left out of every pool.  DeepFaune would have counted an
unreadable file as an empty row, which changes no pooled answer (empty rows never vote), so
the other files of its sequence get DeepFaune's answer; the failed file itself gets `FAILED`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .bulk import without_gc
from .contracts import RunSettings
from .sequences import assign_sequences, sequence_unit
from .types import ANIMAL, EMPTY, FAILED, PERSON, UNDEFINED, VEHICLE, ClassTable, Decision, MediaItem, RawResult

_KEY_LANG = "en"  # keys are the English labels, whatever the output language


@dataclass(frozen=True)
class GroupDecision:
    """The answer for one group of rows; `key`/`top1_key` do not depend on the language."""

    key: str
    label: str
    score: float  # truncated to 2 decimals, as DeepFaune reports it
    top1_key: str
    top1: str
    category: int  # EMPTY, ANIMAL, PERSON or VEHICLE (ANIMAL also when undefined)
    raw_score: float = 0.0  # the float32 score before truncation

    @property
    def failed(self) -> bool:
        return self.key == FAILED


def class_keys(classes: ClassTable) -> list[str]:
    """The classes' language-free keys (their English labels), in model output order."""
    return list(classes.names.get(_KEY_LANG) or next(iter(classes.names.values())))


def excluded_indices(classes: ClassTable, exclude: Sequence[str], lang: str) -> list[int]:
    """Species indices named in `exclude` (case-insensitive).

    A name is looked up in the run language first (DeepFaune only knows that one), then in
    the English keys, then in the other languages: "nutria" is the otter in Spanish but the
    coypu in English.
    """
    if not exclude:  # the usual case, asked once per image and sequence: the tables below cost more than a decision
        return []
    languages = [lang, _KEY_LANG] + [l for l in classes.names if l not in (lang, _KEY_LANG)]
    tables = [[label.casefold() for label in classes.names[l]] for l in languages if l in classes.names]
    indices: set[int] = set()
    unknown = []
    for name in exclude:
        folded = name.strip().casefold()
        for labels in tables:
            if folded in labels:
                indices.add(labels.index(folded))
                break
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"unknown species {', '.join(map(repr, unknown))}")
    return sorted(indices)


def pooled_softmax(rows: np.ndarray, temperature: float) -> tuple[int, np.float32]:
    """Best column and its probability after mean → /T → softmax, in DeepFaune's float32 steps."""
    mean = np.mean(np.asarray(rows, dtype=np.float32), axis=0)  # float32 accumulation
    scaled = mean / np.float32(temperature)
    best = int(np.argmax(scaled))
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.float32(0.0)
        for value in np.exp(scaled):  # Python's sum(): left to right, float32 each step
            total = np.float32(total + value)
        score = np.float32(np.exp(scaled[best]) / total)
    if not np.isfinite(score):  # logits so large that exp overflows: DeepFaune would crash
        shifted = np.exp(scaled.astype(np.float64) - float(scaled[best]))
        score = np.float32(1.0 / shifted.sum())
    return best, score


def truncate2(score: float | np.floating) -> float:
    """int(score * 100) / 100 with a float32 product, as DeepFaune reports scores."""
    return int(np.float32(np.float32(score) * np.float32(100))) / 100.0


def _failed() -> GroupDecision:
    return GroupDecision(FAILED, "", 0.0, FAILED, "", EMPTY, 0.0)


def _fixed(kind: str, category: int, classes: ClassTable, lang: str) -> GroupDecision:
    label = classes.non_animal_label(kind, lang)
    return GroupDecision(kind, label, 1.0, kind, label, category, 1.0)


def _stack(rows: Sequence[RawResult], attr: str, width: int) -> np.ndarray:
    arrays = []
    for row in rows:
        values = getattr(row, attr)
        if values is None:
            raise ValueError(f"{row.relpath}: animal row without {attr}")
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        if values.shape != (width,):
            raise ValueError(f"{row.relpath}: {attr} has {values.shape[0]} values, the model has {width}")
        arrays.append(values)
    return np.stack(arrays)


def decide_group(
    rows: Sequence[RawResult],
    classes: ClassTable,
    threshold: float,
    lang: str,
    exclude: Sequence[str] = (),
    bird: bool = False,
) -> GroupDecision:
    """DeepFaune's answer for one image, sequence or video (failed rows ignored)."""
    if not rows:
        raise ValueError("decide_group needs at least one row")
    rows = frame_rows(rows)
    labels = classes.labels(lang)
    keys = class_keys(classes)
    bird_idx = keys.index(classes.bird_class) if classes.bird_class in keys else None
    if bird and (classes.bird_names is None or bird_idx is None):
        raise ValueError(f"model {classes.version} has no bird head; run without the bird option")
    ok = [r for r in rows if r.failure is None]
    if not ok:
        return _failed()
    if all(r.category == EMPTY for r in ok):
        return _fixed("empty", EMPTY, classes, lang)
    animals = [r for r in ok if r.category == ANIMAL]
    if not animals:
        humans = sum(r.category == PERSON for r in ok)
        vehicles = sum(r.category == VEHICLE for r in ok)
        return _fixed("human", PERSON, classes, lang) if humans >= vehicles else _fixed("vehicle", VEHICLE, classes, lang)

    undefined_label = classes.non_animal_label(UNDEFINED, lang)
    # the threshold and every comparison with it are float32, as in DeepFaune on NumPy >= 2
    limit = np.float32(threshold)

    logits = _stack(animals, "logits", classes.num_classes)
    dropped = set(excluded_indices(classes, exclude, lang))
    kept = [i for i in range(classes.num_classes) if i not in dropped]
    if not kept:
        raise ValueError("every species is excluded")
    temperature = classes.temperature_single if len(animals) == 1 else classes.temperature_multi
    local, score = pooled_softmax(logits[:, kept], temperature)
    best = kept[local]
    top1_key, top1 = keys[best], labels[best]

    if bird and best == bird_idx and classes.bird_names is not None:  # (no bird head: refused above)
        top1_key, top1 = f"{keys[best]} {UNDEFINED}", f"{labels[best]} {undefined_label}"
        if score >= limit:
            bird_keys = list(classes.bird_names.get(_KEY_LANG) or next(iter(classes.bird_names.values())))
            if lang not in classes.bird_names:
                raise ValueError(f"language {lang!r} has no bird labels for model {classes.version}")
            bird_labels = list(classes.bird_names[lang])
            sub, bird_score = pooled_softmax(_stack(animals, "bird_logits", len(bird_keys)), classes.temperature_bird)
            if bird_score >= limit:
                score = bird_score
                top1_key, top1 = f"{keys[best]} {bird_keys[sub]}", f"{labels[best]} {bird_labels[sub]}"

    if score < limit:
        return GroupDecision(UNDEFINED, undefined_label, truncate2(score), top1_key, top1, ANIMAL, float(score))
    return GroupDecision(top1_key, top1, truncate2(score), top1_key, top1, ANIMAL, float(score))


def decide_groups(
    groups: Sequence[Sequence[RawResult]],
    classes: ClassTable,
    threshold: float,
    lang: str,
    exclude: Sequence[str] = (),
    bird: bool = False,
) -> list[GroupDecision]:
    """`decide_group` of each group, bit for bit, with the softmax of every pool done in a few array operations:
    a season is 100,000 pools, and one at a time their Python and NumPy overhead is most of a re-decision.

    Every number goes through the very same float32 steps as `pooled_softmax` (elementwise, so stacking pools
    changes none); pools whose score is not finite (exp overflowed) and anything out of the ordinary go
    through `decide_group` itself.  tests/test_decisions.py compares both on random pools."""
    if not groups:
        return []
    labels = classes.labels(lang)
    keys = class_keys(classes)
    bird_idx = keys.index(classes.bird_class) if classes.bird_class in keys else None
    if bird and (classes.bird_names is None or bird_idx is None):
        raise ValueError(f"model {classes.version} has no bird head; run without the bird option")
    fixed: dict[str, GroupDecision] = {}

    def fixed_one(kind: str, category: int) -> GroupDecision:
        if kind not in fixed:
            fixed[kind] = _fixed(kind, category, classes, lang)
        return fixed[kind]

    out: list[GroupDecision | None] = [None] * len(groups)
    pools: dict[int, list[tuple[int, list[RawResult]]]] = defaultdict(list)  # animal rows -> (group, rows)
    for g, group in enumerate(groups):
        if not group:
            raise ValueError("decide_group needs at least one row")
        rows = frame_rows(group)
        ok = [r for r in rows if r.failure is None]
        if not ok:
            out[g] = _failed()
            continue
        animals = [r for r in ok if r.category == ANIMAL]
        if animals:
            pools[len(animals)].append((g, animals))
        elif all(r.category == EMPTY for r in ok):
            out[g] = fixed_one("empty", EMPTY)
        else:
            humans = sum(r.category == PERSON for r in ok)
            vehicles = sum(r.category == VEHICLE for r in ok)
            out[g] = fixed_one("human", PERSON) if humans >= vehicles else fixed_one("vehicle", VEHICLE)
    if pools:
        undefined_label = classes.non_animal_label(UNDEFINED, lang)
        limit = np.float32(threshold)
        width = classes.num_classes
        dropped = set(excluded_indices(classes, exclude, lang))
        kept = np.array([i for i in range(width) if i not in dropped], dtype=np.intp)
        if not kept.size:
            raise ValueError("every species is excluded")
        slow: list[int] = []
        for n, members in pools.items():
            temperature = classes.temperature_single if n == 1 else classes.temperature_multi
            stack = _stack([r for _, rows in members for r in rows], "logits", width).reshape(len(members), n, width)
            local, scores = _pooled_batch(stack[:, :, kept], temperature)
            best = kept[local]
            finite = np.isfinite(scores)
            birdy = np.zeros(len(members), dtype=bool)
            if bird and classes.bird_names is not None:
                birdy = (best == bird_idx) & finite
            sub = bird_scores = None
            asked = birdy & (scores >= limit)
            if asked.any():
                names = classes.bird_names
                assert names is not None  # asked only where the model has a bird head (birdy)
                bird_keys = list(names.get(_KEY_LANG) or next(iter(names.values())))
                if lang not in names:
                    raise ValueError(f"language {lang!r} has no bird labels for model {classes.version}")
                bird_labels = list(names[lang])
                where = np.flatnonzero(asked)
                heads = _stack([r for k in where for r in members[k][1]], "bird_logits", len(bird_keys))
                sub_local, sub_scores = _pooled_batch(heads.reshape(len(where), n, len(bird_keys)),
                                                      classes.temperature_bird)
                sub = dict(zip(where.tolist(), sub_local.tolist()))
                bird_scores = dict(zip(where.tolist(), sub_scores))
            raw_scores = scores.tolist()
            reported = _truncated2(scores)
            for k, (g, _) in enumerate(members):
                if not finite[k]:
                    slow.append(g)
                    continue
                b = int(best[k])
                score, raw_score, shown = scores[k], raw_scores[k], reported[k]
                top1_key, top1 = keys[b], labels[b]
                if birdy[k]:
                    top1_key, top1 = f"{keys[b]} {UNDEFINED}", f"{labels[b]} {undefined_label}"
                    if bird_scores is not None and sub is not None and k in bird_scores:
                        bird_score = bird_scores[k]
                        if not np.isfinite(bird_score):
                            slow.append(g)
                            continue
                        if bird_score >= limit:
                            score, raw_score, shown = bird_score, float(bird_score), truncate2(bird_score)
                            top1_key, top1 = f"{keys[b]} {bird_keys[sub[k]]}", f"{labels[b]} {bird_labels[sub[k]]}"
                if score < limit:
                    out[g] = GroupDecision(UNDEFINED, undefined_label, shown, top1_key, top1, ANIMAL, raw_score)
                else:
                    out[g] = GroupDecision(top1_key, top1, shown, top1_key, top1, ANIMAL, raw_score)
        for g in slow:  # exp overflowed: decide_group's own float64 way round it
            out[g] = decide_group(groups[g], classes, threshold, lang, exclude, bird)
    return out  # type: ignore[return-value]


def _pooled_batch(stack: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """`pooled_softmax` of each pool of a (pools, rows, classes) float32 stack: the same float32 mean, division,
    exp, left-to-right sum over the classes and division, done for all pools at once (the scores of pools whose
    exp overflowed are not finite here: `decide_group` redoes those)."""
    mean = np.mean(stack, axis=1)  # float32 accumulation, row after row, as over axis 0 of one pool
    scaled = mean / np.float32(temperature)
    best = np.argmax(scaled, axis=1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        exps = np.exp(scaled)
        total = np.zeros(len(exps), dtype=np.float32)
        for column in range(exps.shape[1]):  # Python's sum() of one pool: left to right, float32 each step
            total = total + exps[:, column]
        scores = exps[np.arange(len(exps)), best] / total
    return best, scores


def _truncated2(scores: np.ndarray) -> list[float]:
    """`truncate2` of every (finite) score: the float32 product, truncated toward zero, over 100."""
    with np.errstate(invalid="ignore"):
        hundredths = np.where(np.isfinite(scores), scores * np.float32(100), 0).astype(np.float32).astype(np.int64)
    return [int(h) / 100.0 for h in hundredths.tolist()]


def frame_rows(rows: Sequence[RawResult]) -> list[RawResult]:
    """The rows a pool sees: a video's frames in place of the video."""
    return [frame for row in rows for frame in (row.frames or [row])]


@without_gc()  # a chunk, or a whole season, of decisions at once (bulk.py)
def decide_run(
    items: Sequence[MediaItem],
    raws: Sequence[RawResult],
    classes: ClassTable,
    settings: RunSettings,
    first_seqnum: int = 1,
) -> list[Decision]:
    """Per-image and per-sequence decisions for a run, sorted by (seqnum, relpath) like DeepFaune's table,
    sequences numbered from `first_seqnum` (a chunk of a run goes on from the previous chunk's numbers).

    Failed files keep a sequence number (so the others' numbers match DeepFaune's) but are
    left out of their sequence's pool and get prediction "", score 0 and key `FAILED`.
    """
    by_path = {r.relpath: r for r in raws}
    missing = [item.relpath for item in items if item.relpath not in by_path]
    if missing:
        raise ValueError(f"no raw result for {len(missing)} file(s), e.g. {missing[0]}")
    rows = [by_path[item.relpath] for item in items]
    seqnums = assign_sequences(
        [(sequence_unit(item), raw.date, item.relpath) for item, raw in zip(items, rows)], settings.maxlag,
        first_seqnum,
    )

    def decide(groups: Sequence[Sequence[RawResult]]) -> list[GroupDecision]:
        return decide_groups(groups, classes, settings.threshold, settings.lang, settings.exclude, settings.bird)

    members: dict[int, list[RawResult]] = defaultdict(list)
    for seqnum, raw in zip(seqnums, rows):
        members[seqnum].append(raw)
    alone = [raw for raw in rows if raw.failure is None]
    own = dict(zip(map(id, alone), decide([[raw] for raw in alone])))  # each image's own answer, once
    # a sequence of one image is that image's own pool: the same answer, not computed twice
    per_sequence = {seqnum: own[id(group[0])] for seqnum, group in members.items()
                    if len(group) == 1 and id(group[0]) in own}
    pooled = [seqnum for seqnum in members if seqnum not in per_sequence]
    per_sequence.update(zip(pooled, decide([members[seqnum] for seqnum in pooled])))

    decisions = []
    for item, raw, seqnum in zip(items, rows, seqnums):
        if raw.failure is not None:
            decisions.append(Decision(
                relpath=item.relpath, date=raw.date, seqnum=seqnum, predictionbase="", scorebase=0.0,
                prediction="", score=0.0, top1="", count=0, humancount=0, category=EMPTY,
                prediction_key=FAILED, top1_key=FAILED, failure=raw.failure, top1base_key=FAILED,
                predictionbase_key=FAILED,
            ))
            continue
        base, seq = own[id(raw)], per_sequence[seqnum]
        selected = raw.selected_detection
        decisions.append(Decision(
            relpath=item.relpath, date=raw.date, seqnum=seqnum,
            predictionbase=base.label, scorebase=base.score,
            prediction=seq.label, score=seq.score, top1=seq.top1,
            count=raw.count, humancount=raw.humancount, category=seq.category,
            prediction_key=seq.key, top1_key=seq.top1_key,
            box=selected.box if selected else None, box_conf=selected.conf if selected else None,
            raw_score=seq.raw_score, raw_scorebase=base.raw_score, categorybase=base.category,
            top1base_key=base.top1_key, predictionbase_key=base.key,
        ))
    decisions.sort(key=lambda d: (d.seqnum, d.relpath))
    return decisions
