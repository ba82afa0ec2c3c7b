"""Deciding with an adapted head (`run/evaluate/review --adapted NAME`, issue 34): each classified crop's logits
computed again from its stored features by the site head, then DeepFaune's own decision rules, unchanged
(temperature, threshold, sequences: decisions.decide_run).  No model runs for this; a crop without stored
features (a file stored by a run with --no-features, or before issue 34) keeps DeepFaune's logits, padded so
that no new class can win it: its decision is DeepFaune's, and the run says how many such files there were."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .adapt import relabel
from .errors import RunError
from .inference import by_fingerprint
from .models.heads import AdaptedHead, HeadError, list_heads, load_head
from .store import ResultStore, read_features
from .types import ClassTable, MediaItem, RawResult

#: The logit given to a new class where DeepFaune's own logits decide (no features): exp(-1e4) is 0.
ABSENT = -1.0e4


def adapted_table(classes: ClassTable, new: Sequence[str]) -> ClassTable:
    """DeepFaune's class table with a head's new classes after its own, named by their key in every language."""
    return replace(classes, names={lang: [*labels, *new] for lang, labels in classes.names.items()})


def open_head(models_dir: Path, name: str, classes: ClassTable, info: dict) -> AdaptedHead:
    """The head called `name`, refused unless it belongs to the classifier this run uses."""
    try:
        head = load_head(models_dir, name)
    except HeadError as err:
        raise RunError(str(err)) from None
    sha = ((info.get("files") or {}).get("classifier") or {}).get("sha256", "")
    if head.classifier_sha256 != sha:
        raise RunError(f"adapted head {name!r} belongs to another classifier (model {head.model_version}, "
                       f"{head.classifier_sha256[:12]}); this run's is {classes.version} ({sha[:12] or 'unknown'}): "
                       "fit one for it with `deepfaune adapt`")
    if head.base_classes != classes.num_classes:
        raise RunError(f"adapted head {name!r} starts from {head.base_classes} classes; model {classes.version} has "
                       f"{classes.num_classes}")
    return head


def open_decider(name: str, inference, store: ResultStore | None, settings) -> "HeadDecider":
    """The decider of `run --adapted NAME`: refused before any file is read unless the result store and the
    backend's description (its classifier file) are there, and the head belongs to that classifier."""
    from .models.installed import default_models_dir

    if store is None:
        raise RunError(f"--adapted {name}: needs the result store (its features); drop --no-store")
    if inference.description is None:
        raise RunError(f"--adapted {name}: backend {inference.backend.name!r} keeps no outputs in the result store")
    head = open_head(Path(settings.models_dir or default_models_dir()), name, inference.description.classes,
                     inference.info)
    if head.verdict and not head.helps:
        inference.log(f"note: adapted head {name!r} did not help in its cross-validation ({head.source}); deciding "
                      "with it as asked")
    return HeadDecider(head, store, inference.fingerprint)


def same_source(head: AdaptedHead, source: Path) -> bool:
    """Whether `head` was fitted on `source` (`deepfaune adapt` records the source's absolute path)."""
    recorded = Path(head.source) if head.source else None
    if recorded is None or not recorded.is_absolute():
        return False
    try:
        return recorded.resolve() == Path(source).resolve()
    except OSError:
        return False


def offered_head(models_dir: Path, source: Path, classifier_sha256: str) -> str | None:
    """The one line a run or review of `source` without --adapted prints when a site head fitted on that source,
    for this classifier, was shown better by its cross-validation (the best difference when several are); None
    otherwise, and always for a head that does not help: it is never offered."""
    try:
        heads, _ = list_heads(models_dir)
    except OSError:
        return None
    good = [h for h in heads if h.helps and h.classifier_sha256 == classifier_sha256 and same_source(h, source)]
    if not good:
        return None
    best = max(good, key=lambda h: (gain(h), h.created))
    return (f"an adapted head {best.name} helps for this source ({gain(best) * 100:+.1f} points of accuracy in "
            f"cross-validation): --adapted {best.name}")


def gain(head: AdaptedHead) -> float:
    """The cross-validated accuracy difference, adapted minus DeepFaune (0 where the verdict does not say)."""
    difference = head.verdict.get("difference")
    value = difference.get("value") if isinstance(difference, dict) else None
    return float(value) if isinstance(value, (int, float)) else 0.0


def offer_for(inference, settings, source: Path) -> str | None:
    """`offered_head` for a run or review of `source` with these settings' classifier (none without one)."""
    from .models.installed import default_models_dir

    sha = ((inference.info.get("files") or {}).get("classifier") or {}).get("sha256", "")
    if not sha or inference.description is None:
        return None
    return offered_head(Path(settings.models_dir or default_models_dir()), source, sha)


@dataclass
class HeadDecider:
    """Gives a run's raw outputs the adapted head's logits, chunk by chunk, from the result store's features."""

    head: AdaptedHead
    store: ResultStore
    fingerprint: str
    without_features: int = 0  # files decided by DeepFaune's head (no stored features)
    relabelled: int = 0  # files whose crops the adapted head decided

    def classes(self, classes: ClassTable) -> ClassTable:
        return adapted_table(classes, self.head.new_classes)

    def raws(self, items: Sequence[MediaItem], raws: Sequence[RawResult]) -> list[RawResult]:
        features = stored_features(self.store, self.fingerprint, items)
        pad = len(self.head.new_classes)
        out = []
        for item, raw in zip(items, raws):
            crops = features.get(item.relpath, {})
            missing = []

            def logits_of(r: RawResult) -> np.ndarray | None:
                key = crop_key(raw, r)
                if key in crops:
                    return self.head.logits(crops[key][None, :])[0]
                missing.append(key)
                return padded(r.logits, pad)

            new = relabel(raw, logits_of)
            if new.animals is not None:  # --every-animal: the other boxes have no features; DeepFaune's own
                new.animals = [replace(a, logits=padded(a.logits, pad)) for a in new.animals]
            if new.logits is not None or new.frames:
                if missing:
                    self.without_features += 1
                elif crops:
                    self.relabelled += 1
            out.append(new)
        return out

    def note(self) -> str | None:
        if not self.without_features:
            return None
        return (f"{self.without_features} file(s) have no stored features (stored by a run with --no-features, or "
                f"before issue 34): DeepFaune's own head decided them, not {self.head.name!r}; `deepfaune store "
                "prune --keep` then a run computes them again with their features")


def decided_by(decider: HeadDecider, pairs: Sequence[tuple[MediaItem, RawResult | None]]
               ) -> list[tuple[MediaItem, RawResult | None]]:
    """A block of (item, stored raw output or None) with the stored outputs given the head's logits (evaluate)."""
    stored = [(item, raw) for item, raw in pairs if raw is not None]
    new = iter(decider.raws([item for item, _ in stored], [raw for _, raw in stored]))
    return [(item, None if raw is None else next(new)) for item, raw in pairs]


def crop_key(raw: RawResult, crop: RawResult) -> tuple[int, int]:
    """The (frame, box) a crop's features are stored under (store.feature_rows): `crop` is `raw` or a frame of it."""
    frame = -1 if not raw.frames else int(crop.frame_number if crop.frame_number is not None else -1)
    return frame, int(crop.selected if crop.selected is not None else -1)


def padded(logits: np.ndarray | None, extra: int) -> np.ndarray | None:
    if logits is None or not extra:
        return logits
    return np.concatenate([np.asarray(logits, np.float32), np.full(extra, ABSENT, np.float32)])


def stored_features(store: ResultStore, fingerprint: str,
                    items: Sequence[MediaItem]) -> dict[str, dict[tuple[int, int], np.ndarray]]:
    """relpath -> {(frame, box): float32 features} of the items' classified crops kept in the store."""
    out: dict[str, dict[tuple[int, int], np.ndarray]] = {}
    for fp, group in by_fingerprint(fingerprint, items).items():
        contents: dict[str, list[str]] = {}
        for item, ident in zip(group, store.known.identities(group)):
            if ident is not None:
                contents.setdefault(ident.content, []).append(item.relpath)
        if not contents:
            continue
        feats = read_features(store.path, fp, contents)
        values = feats.values.astype(np.float32)
        for i, content in enumerate(feats.content):
            for rel in contents.get(content, ()):
                out.setdefault(rel, {})[(int(feats.frame[i]), int(feats.box[i]))] = values[i]
    return out
