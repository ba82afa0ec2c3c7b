"""One review: a source's sequences, DeepFaune's decisions from the result store, and the people's labels.

Nothing here writes the user's files. A label is kept in the result store the moment it is given (so a
restart loses nothing, and the label follows the file's bytes); `deepfaune review --export` or any later
`deepfaune run` writes them into the source's own files through its host.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..adapted import offer_for, open_decider
from ..animals import box_entries, decide_box
from ..api import Host, RunSettings
from ..bulk import without_gc
from ..corrections import label_choices, label_text, overlay, overlay_boxes
from ..decisions import decide_run
from ..errors import DeepfauneError
from ..exifdate import suspect_date
from ..inference import Inference, item_fingerprint
from ..pipeline import read_to_look
from ..report.thumbs import Job, ThumbCache
from ..report.view import review_reason, station_of
from ..store import MAX_HUMAN_BOXES, ResultStore
from ..taxonomy import fold
from ..types import (ANIMAL, FAILED, FILE_DATE, PERSON, UNDEFINED, VEHICLE, Decision, HumanFields, HumanLabel,
                     MediaItem, RawResult)
from .batch import MAX_BATCH_FILES, BatchFilter, FilterError
from .search import LabelSearch
from .similar import MAX_SIMILAR, FeatureIndex, LearnOrder, margin_of

MAX_UNDO = 20  # batches one undo after another can take back
PAGE_SEQUENCES = 20  # sequences per page: what one screen shows without scrolling far
MAX_PAGE_SEQUENCES = 200
SIMILAR = 24  # pictures like the current one the page shows (issue 34.5)
ORDERS = ("queue", "learn")
#: Why a sequence is in the queue, in the order the page shows them.
REASONS = ("undefined", "near", "disagree", "date")


class ReviewError(DeepfauneError):
    """A review that cannot start or a request it cannot honour; the message says which file and why."""


#: A box's category as the page names it, and back.
BOX_CATEGORIES = {"animal": ANIMAL, "person": PERSON, "vehicle": VEHICLE}
MIN_BOX = 1e-3  # a box narrower or lower than this fraction of the image is a slip of the mouse: refused


@dataclass
class ReviewSequence:
    """One sequence as the review shows it: its files' decisions (people's labels laid over)."""

    seqnum: int
    decisions: list[Decision]
    reasons: tuple[str, ...] = ()
    station: str = ""

    @property
    def reviewed(self) -> bool:
        return self.progress()[0]

    def progress(self) -> tuple[bool, str | None]:
        """Whether every file has a person's label, and who finished the sequence (the reviewer of its latest
        label; None while a file still waits for one): one pass, as the summary asks it of every sequence."""
        last = None
        for d in self.decisions:
            if d.failure is not None:
                continue
            if d.human is None:
                return False, None
            if last is None or (d.human.at, d.human.reviewer) > (last.at, last.reviewer):
                last = d.human
        return True, None if last is None else last.reviewer


@dataclass
class ReviewSession:
    """Everything a review shows and changes; safe to call from the server's one thread at a time (a lock)."""

    source: Path
    host: Host
    settings: RunSettings
    store: ResultStore
    items: dict[str, MediaItem]
    raws: dict[str, RawResult]
    classes: Any
    machine: list[Decision]
    thumbs: ThumbCache
    reviewer: str = "reviewer"
    show_all: bool = False
    missing: list[str] = field(default_factory=list)  # files with no stored outputs (not reviewable)
    sequences: list[ReviewSequence] = field(default_factory=list)
    queue: list[int] = field(default_factory=list)  # indexes into sequences
    human: dict = field(default_factory=dict)  # relpath -> HumanLabel, as kept in the store
    where: dict = field(default_factory=dict)  # relpath -> index into sequences
    ids: dict = field(default_factory=dict)  # file_id -> relpath: what a URL may name
    lock: threading.Lock = field(default_factory=threading.Lock)
    standin: bool = False  # the stored outputs came from stand-in models (random weights): meaningless labels
    store_file: tuple[int, int] | None = None  # (device, inode) of the result store when opened
    boxes: dict = field(default_factory=dict)  # relpath -> HumanBoxes: the boxes people drew, as kept in the store
    shown: dict = field(default_factory=dict)  # relpath -> RawResult with those boxes over the detector's
    box_edits: dict = field(default_factory=dict)  # relpath -> boxes saved this session (the pictures' URL version)
    batches: list = field(default_factory=list)  # undo of the batches: (what, [(relpath, own label or None)])
    _search: Any = None  # LabelSearch, made on the first search
    repeat_groups: list = field(default_factory=list)  # --drop-repeats: every place set aside (repeats.RepeatGroup)
    order: str = "queue"  # "learn": the queue ordered by how much a label teaches (issue 34.5)
    features_of: dict = field(default_factory=dict)  # relpath -> (models fingerprint, content key) in the store
    _features: Any = None  # similar.FeatureIndex, read on first use
    _learn: Any = None  # similar.LearnOrder, with order "learn"
    _frozen: int = 0  # queue positions already shown: a new order never moves them (order "learn")

    # -- building

    @classmethod
    @without_gc()  # a season's items, outputs and decisions at once (bulk.py)
    def open(cls, source: Path, host: Host, backend, settings: RunSettings, store: ResultStore,
             options: Mapping[str, Any], thumbs_dir: Path, reviewer: str, show_all: bool = False,
             log: Callable[[str], None] = print, blur_humans: bool = False, order: str = "queue",
             adapted: str | None = None) -> "ReviewSession":
        """Reads the source through its host (writing nothing) and its stored outputs (no model runs); `adapted`:
        the site head that decides instead of DeepFaune's (`review --adapted NAME`, from the stored features)."""
        if order not in ORDERS:
            raise ReviewError(f"order {order!r}: one of {', '.join(ORDERS)} is expected")
        inference = Inference(backend, settings, store, None, False, log)
        try:
            if inference.description is None:
                raise ReviewError(f"backend {backend.name!r} keeps no outputs in the result store; review shows "
                                  "stored outputs only")
            _, blocks = read_to_look(host, source, dict(options), log)
            items = [item for block in blocks for item in block]
            log(f"{source}: {len(items)} files; finding their results in {store.path} (a file is read only "
                "when the store has not seen it as it is now)")
            found = inference.stored(items)
            fingerprint = inference.fingerprint
            decider = None if adapted is None else open_decider(adapted, inference, store, settings)
            if decider is None and (offer := offer_for(inference, settings, source)) is not None:
                log(offer)
        finally:
            inference.close()
        kept = [item for item in items if item.relpath in found]
        missing = [item.relpath for item in items if item.relpath not in found]
        if not kept:
            raise ReviewError(f"{source}: none of its {len(items)} files has stored outputs for these settings "
                              f"(model {settings.model_version}, detector {settings.detector_mode}); run "
                              f"`deepfaune run {source}` with them first")
        if missing:
            log(f"{len(missing)} file(s) have no stored outputs and are not shown, e.g. {missing[0]}")
        classes = inference.description.classes
        standin = bool(inference.description.info.get("standin"))
        raws = [found[item.relpath] for item in kept]
        groups: list = []
        if settings.drop_repeats:  # the season as the run decides it: the repeats aside, the restored ones back
            raws, groups = repeats_aside(kept, raws, backend, settings, store, log)
        if decider is not None:
            raws, classes = decider.raws(kept, raws), decider.classes(classes)
            if (note := decider.note()) is not None:
                log(note)
        session = cls(source=source, host=host, settings=settings, store=store,
                      items={item.relpath: item for item in kept}, raws={r.relpath: r for r in raws},
                      classes=classes, machine=decide_run(kept, raws, classes, settings),
                      thumbs=ThumbCache(thumbs_dir, blur=blur_humans), reviewer=reviewer, show_all=show_all,
                      missing=missing, standin=standin, store_file=_identity(store.path), order=order)
        contents = store.contents(kept)  # known since the lookup: no file is read again
        session.features_of = {item.relpath: (item_fingerprint(fingerprint, item), contents[item.relpath])
                               for item in kept if item.relpath in contents}
        session.ids = {file_id(rel): rel for rel in session.items}
        session.repeat_groups = groups
        session.thumbs.folder.mkdir(parents=True, exist_ok=True)
        session.refresh()
        return session

    def refresh(self) -> None:
        """The sequences with the people's labels laid over, and the queue (read once: a label given here
        changes only its own sequences, `_relabel`)."""
        items = list(self.items.values())
        self.human = self.store.human_labels(items)
        self.boxes = self.store.human_boxes(items)
        current, self.shown = overlay_boxes(overlay(self.machine, self.human, self.classes, self.settings.lang),
                                            self.raws, self.boxes)
        by_seq: dict[int, list[Decision]] = {}
        for d in current:
            by_seq.setdefault(d.seqnum, []).append(d)
        self.sequences = []
        self.where = {}
        for seqnum in sorted(by_seq):
            decisions = sorted(by_seq[seqnum], key=lambda d: (d.date is None, d.date or datetime.min, d.relpath))
            head = decisions[0]
            for d in decisions:
                self.where[d.relpath] = len(self.sequences)
            self.sequences.append(ReviewSequence(seqnum, decisions, self._reasons(decisions),
                                            station_of(self.items.get(head.relpath), head.relpath)))
        self.queue = [i for i, s in enumerate(self.sequences) if self.show_all or s.reasons]
        self._frozen, self._learn = 0, None

    def _relabel(self, relpaths: Sequence[str]) -> None:
        """Lay the people's labels again over the sequences of `relpaths` only: a keypress costs a sequence,
        not the season (the queue stays: why a sequence needs a look is DeepFaune's answer, not the person's)."""
        for index in {self.where[rel] for rel in relpaths}:
            seq = self.sequences[index]
            machine = [d.machine or d for d in seq.decisions]
            seq.decisions, self.shown = overlay_boxes(overlay(machine, self.human, self.classes, self.settings.lang),
                                                      self.shown, self.boxes)

    def _reasons(self, decisions: list[Decision]) -> tuple[str, ...]:
        """Why a person should look: DeepFaune's decision (`machine`), so a corrected sequence stays listed."""
        machine = [d.machine or d for d in decisions if d.failure is None]
        if not machine:
            return ()
        head = machine[0]
        first = review_reason(head, self.settings.threshold)  # the review page's own rule: undefined or near
        out = {first} if first else set()
        for d in machine:  # an image whose own answer is another species than its sequence's
            if (d.categorybase == ANIMAL and d.predictionbase_key not in (UNDEFINED, head.prediction_key, "")
                    and not d.predictionbase_key.endswith(" " + UNDEFINED)):
                out.add("disagree")
            raw = self.raws.get(d.relpath)  # a guess from the file time, or a clock that was never set
            if raw is not None and raw.date is not None and (raw.date_source == FILE_DATE or suspect_date(raw.date)):
                out.add("date")
        return tuple(r for r in REASONS if r in out)

    # -- what the page asks

    def summary(self) -> dict[str, Any]:
        """What the page's head line says; `by_reviewer`: how many of the queue's sequences each person finished
        (the one who gave a sequence's latest label), so a shared review shows who did what of `queue`."""
        queued = [self.sequences[i] for i in self.queue]
        by_reviewer: dict[str, int] = {}
        reviewed = 0
        for seq in queued:
            done, who = seq.progress()
            reviewed += done
            if who is not None:
                by_reviewer[who] = by_reviewer.get(who, 0) + 1
        return {"source": str(self.source), "host": self.host.name, "model": self.classes.version,
                "threshold": self.settings.threshold, "lang": self.settings.lang, "reviewer": self.reviewer,
                "files": len(self.items), "sequences": len(self.sequences), "queue": len(queued),
                "reviewed": reviewed, "missing": len(self.missing),
                "pages": max(1, -(-len(queued) // PAGE_SEQUENCES)), "page_size": PAGE_SEQUENCES,
                "by_reviewer": dict(sorted(by_reviewer.items())), "standin": self.standin,
                "conflicts": sum(1 for h in self.human.values() if h.others),
                "empty": None if queued else self.empty_reason(), **self._learn_summary()}

    def empty_reason(self) -> str:
        """Why the queue is empty, and how to see every sequence (issue 33.5: never a blank page)."""
        return (f"Nothing to review: none of the {len(self.sequences)} sequences of {self.source} is undefined, "
                f"near the threshold ({self.settings.threshold} to {self.settings.threshold + 0.1:.2f}), has "
                "images that disagree or a suspect date. To see every sequence, start "
                f"`deepfaune review {self.source} --all`; \"Many at once\" (b) also selects outside the queue.")

    def stations(self) -> list[str]:
        """The stations (cameras, folders) of the review's sequences, for the batch filter's choices."""
        return sorted({seq.station for seq in self.sequences if seq.station})

    def page(self, number: int, size: int = PAGE_SEQUENCES) -> dict[str, Any]:
        size = max(1, min(int(size), MAX_PAGE_SEQUENCES))
        pages = max(1, -(-len(self.queue) // size))
        number = max(0, min(int(number), pages - 1))
        if self.order == "learn" and number * size >= self._frozen:  # the pages not yet shown, ordered anew
            self._reorder()
            self._frozen = (number + 1) * size
        chosen = self.queue[number * size:(number + 1) * size]
        return {"page": number, "pages": pages, "total": len(self.queue),
                "sequences": [self._sequence_json(self.sequences[i]) for i in chosen]}

    def _sequence_json(self, seq: ReviewSequence) -> dict[str, Any]:
        head = seq.decisions[0]
        machine = head.machine or head
        return {"id": seq.seqnum, "station": seq.station, "reasons": list(seq.reasons), "reviewed": seq.reviewed,
                "label": head.prediction, "key": head.prediction_key,
                "machine": {"label": machine.prediction, "key": machine.prediction_key,
                            "score": round(float(machine.score), 2)},
                "files": [self._file_json(d) for d in seq.decisions]}

    def _file_json(self, d: Decision) -> dict[str, Any]:
        machine = d.machine or d
        raw = self.raws.get(d.relpath)
        return {"f": d.relpath, "id": file_id(d.relpath), "date": d.date.isoformat(" ") if d.date else None,
                "label": d.prediction, "key": d.prediction_key,
                "machine": {"label": machine.predictionbase, "key": machine.predictionbase_key,
                            "score": round(float(machine.scorebase), 2)},
                "human": None if d.human is None else {"key": d.human.key, "by": d.human.reviewer,
                                                        "at": d.human.at.isoformat(timespec="seconds"),
                                                        "fields": {n: getattr(d.human.fields, n)
                                                                   for n in d.human.fields.given()},
                                                        "others": [self._human_json(o) for o in d.human.others]},
                "failed": d.failure is not None or d.prediction_key == FAILED,
                "date_source": raw.date_source if raw is not None else "", **self._boxes_json(d.relpath),
                **self._animals_json(d, raw)}

    def _animals_json(self, d: Decision, raw: RawResult | None) -> dict[str, Any]:
        """`animals` where the store holds every animal box's outputs (a run with --every-animal): each box with
        its own label and score, as the review page draws them (`animals.box_entries`); nothing otherwise."""
        if raw is None or raw.animals is None or raw.failure is not None or not raw.width or not raw.height:
            return {}
        rows = [decide_box(raw, animal, d.seqnum, self.classes, self.settings) for animal in raw.animals]
        return {"animals": box_entries(rows), "ar": round(raw.width / raw.height, 5)}  # to place them letterboxed

    def labels(self) -> list[dict[str, Any]]:
        """Every label a person may give, with its name in each language of the card (search as you type)."""
        langs = list(self.classes.names)
        return [{"key": key, "label": label_text(self.classes, key, self.settings.lang),
                 "names": sorted({label_text(self.classes, key, lang) for lang in langs} | {key})}
                for key in label_choices(self.classes)]

    def set_labels(self, relpaths: Sequence[str], key: str | None) -> dict[str, Any]:
        """Keep a person's label for these files (None: forget it, DeepFaune's answer shows again)."""
        if key is not None and key not in set(label_choices(self.classes)):
            raise ReviewError(f"{key!r} is no label of model {self.classes.version}")
        unknown = [rel for rel in relpaths if rel not in self.items]
        if unknown or not relpaths:
            raise ReviewError(f"not a file of this review: {unknown[0] if unknown else '(none given)'}")
        self._check_store()
        try:
            changed = self.store.set_human([(self.items[rel], key) for rel in relpaths], self.reviewer)
        except ValueError as err:  # a file that cannot be read now
            raise ReviewError(str(err)) from None
        self._reread(relpaths)
        return {"changed": changed, "summary": self.summary()}

    def _check_store(self) -> None:
        if _identity(self.store.path) != self.store_file:  # `deepfaune store clear`, or a store put back
            raise ReviewError(f"result store {self.store.path} was removed or replaced while this review was open: "
                              "the label is not kept (it would be lost); start `deepfaune review` again")

    def _reread(self, relpaths: Sequence[str]) -> None:
        """The people's labels of `relpaths` read again from the store, and their sequences laid over anew."""
        for rel in relpaths:  # another reviewer's label of the file, if any, shows again
            self.human.pop(rel, None)
        self.human.update(self.store.human_labels([self.items[rel] for rel in relpaths]))
        self._relabel(relpaths)

    def set_fields(self, relpaths: Sequence[str], values: Mapping[str, Any]) -> dict[str, Any]:
        """Keep what the reviewer recorded besides the label for these files (a picture, or a sequence's):
        `values` names the fields changed (count, sex, life_stage, behaviour, individual, comment, species_counts;
        "" or None forgets one). A file this reviewer has not labelled takes the label it shows (another reviewer's, or
        DeepFaune's, as `Enter` accepts it); one that shows undefined or failed is refused: pick a label first."""
        from ..human_fields import FieldValueError, merged
        from ..taxonomy import LabelReader

        unknown = [rel for rel in relpaths if rel not in self.items]
        if unknown or not relpaths:
            raise ReviewError(f"not a file of this review: {unknown[0] if unknown else '(none given)'}")
        mine = self.store.human_records([self.items[rel] for rel in relpaths])
        labels = LabelReader(self.classes, self.settings.bird)  # the rule --import reads labels by
        entries = []
        for rel in relpaths:
            own = next((h for h in mine.get(rel, ()) if h.reviewer == self.reviewer), None)
            shown = self.sequences[self.where[rel]].decisions
            d = next(x for x in shown if x.relpath == rel)
            key = own.key if own is not None else d.prediction_key
            if own is None and (d.failure is not None or key not in set(label_choices(self.classes))):
                raise ReviewError(f"{rel}: give it a label first (it shows {d.prediction or key!r})")
            try:
                entries.append((rel, key, merged(own.fields if own is not None else HumanFields(), values, labels)))
            except FieldValueError as err:
                raise ReviewError(f"{rel}: {err}") from None
        changed = 0
        for rel, key, fields in entries:  # each file its own fields (a sequence's files may differ)
            changed += self.store.set_human([(self.items[rel], key)], self.reviewer, fields)
        self.human.update(self.store.human_labels([self.items[rel] for rel in relpaths]))
        self._relabel(relpaths)
        return {"changed": changed, "summary": self.summary()}

    def conflicts(self) -> list[dict[str, Any]]:
        """The files two or more reviewers labelled differently, each reviewer's label side by side (the first
        decides the outputs: the latest), for the page to show; nothing is overwritten."""
        out = []
        for rel, h in sorted(self.human.items()):
            if not h.others:
                continue
            out.append({"f": rel, "id": file_id(rel), "seq": self.sequences[self.where[rel]].seqnum,
                        "labels": [self._human_json(x) for x in (h, *h.others)]})
        return out

    def _human_json(self, h: HumanLabel) -> dict[str, Any]:
        return {"key": h.key, "label": label_text(self.classes, h.key, self.settings.lang), "by": h.reviewer,
                "at": h.at.isoformat(timespec="seconds"),
                "fields": {name: getattr(h.fields, name) for name in h.fields.given()}}

    # -- many at once (issue 33.2): a filter over every sequence, one label (or DeepFaune's) for all, one undo

    def select(self, data: Any) -> dict[str, Any]:
        """What a filter takes, before anything is changed: how many sequences and files, how many of them
        outside the queue, and the first few sequences' numbers."""
        chosen = self._selected(data)
        queued = set(self.queue)
        return {"sequences": len(chosen), "files": sum(len(self._labellable(self.sequences[i])) for i in chosen),
                "outside_queue": sum(i not in queued for i in chosen),
                "first": [self.sequences[i].seqnum for i in chosen[:10]], "max_files": MAX_BATCH_FILES}

    def batch_label(self, data: Any, key: str) -> dict[str, Any]:
        """`key` for every file (failed ones aside) of every sequence the filter takes: one store transaction,
        one undo."""
        if key not in set(label_choices(self.classes)):
            raise ReviewError(f"{key!r} is no label of model {self.classes.version}")
        chosen = self._selected(data)
        entries = [(rel, key) for i in chosen for rel in self._labellable(self.sequences[i])]
        return self._apply_batch(entries, len(chosen), 0, label_text(self.classes, key, self.settings.lang))

    def batch_accept(self, data: Any) -> dict[str, Any]:
        """DeepFaune's own label of each sequence the filter takes, for its files; a sequence DeepFaune left
        undefined is skipped (counted: a person must pick its label)."""
        entries, taken, skipped = [], 0, 0
        choices = set(label_choices(self.classes))
        for i in self._selected(data):
            seq = self.sequences[i]
            key = (seq.decisions[0].machine or seq.decisions[0]).prediction_key
            if key not in choices:  # undefined, failed
                skipped += 1
                continue
            taken += 1
            entries += [(rel, key) for rel in self._labellable(seq)]
        return self._apply_batch(entries, taken, skipped, "DeepFaune's label")

    def undo(self) -> dict[str, Any]:
        """The last batch taken back: this reviewer's labels of its files exactly as they were before it (no
        label where there was none), in one transaction."""
        if not self.batches:
            raise ReviewError("no batch to undo")
        self._check_store()
        what, previous = self.batches[-1]
        try:
            restored = self.store.restore_human(self.reviewer, [(self.items[rel], h) for rel, h in previous])
        except ValueError as err:  # a file that cannot be read now: the batch stays undoable
            raise ReviewError(str(err)) from None
        self.batches.pop()
        self._reread([rel for rel, _ in previous])
        return {"restored": restored, "what": what, "undo": len(self.batches), "summary": self.summary()}

    def _selected(self, data: Any) -> list[int]:
        try:
            chosen = BatchFilter.parse(data, self._filter_label)
        except FilterError as err:
            raise ReviewError(str(err)) from None
        queued = set(self.queue) if chosen.queue else ()
        return [i for i, seq in enumerate(self.sequences) if chosen.matches(seq, i in queued)]

    def _filter_label(self, text: str) -> str:
        """A label typed in the filter, as a key: any name the label search finds exactly, or undefined."""
        if fold(text) in {fold(UNDEFINED), *(fold(t) for t in self.classes.non_animal.get(UNDEFINED, {}).values())}:
            return UNDEFINED
        index = self.search_index()
        key = index.reader.key(text)
        if key in set(label_choices(self.classes)):
            return key
        found = index.search(text)  # the start of one label's name
        if len(found) == 1:
            return found[0]["key"]
        if not found:
            raise FilterError(f"filter label {text!r}: no label of model {self.classes.version} is called so")
        raise FilterError(f"filter label {text!r}: several labels are called so ("
                          f"{', '.join(f['label'] for f in found[:4])}{', …' if len(found) > 4 else ''}): type more")

    @staticmethod
    def _labellable(seq: ReviewSequence) -> list[str]:
        return [d.relpath for d in seq.decisions if d.failure is None and d.prediction_key != FAILED]

    def _apply_batch(self, entries: list[tuple[str, str]], sequences: int, skipped: int, what: str
                     ) -> dict[str, Any]:
        if len(entries) > MAX_BATCH_FILES:
            raise ReviewError(f"the filter takes {len(entries):,} files; at most {MAX_BATCH_FILES:,} are labelled at "
                              "once: narrow it (a station, a date range) and label them in parts")
        if not entries:
            return {"changed": 0, "sequences": 0, "files": 0, "skipped": skipped, "undo": len(self.batches),
                    "summary": self.summary()}
        self._check_store()
        rels = [rel for rel, _ in entries]
        before = self.store.human_records([self.items[rel] for rel in rels])
        previous = [(rel, next((h for h in before.get(rel, ()) if h.reviewer == self.reviewer), None))
                    for rel in rels]
        try:
            changed = self.store.set_human([(self.items[rel], key) for rel, key in entries], self.reviewer)
        except ValueError as err:  # a file that cannot be read now: nothing of the batch is kept
            raise ReviewError(str(err)) from None
        self.batches.append((what, previous))
        del self.batches[:-MAX_UNDO]
        self._reread(rels)
        return {"changed": changed, "sequences": sequences, "files": len(entries), "skipped": skipped,
                "what": what, "undo": len(self.batches), "summary": self.summary()}

    # -- repeats (issue 32): the places `--drop-repeats` set aside, confirmed or restored by a person

    def repeats(self) -> dict[str, Any]:
        """Every place set aside, by station, with the decision that holds for it (the latest reviewer's) and
        this reviewer's own; `on`: whether the run set repeats aside at all (without it the page shows nothing)."""
        from ..repeats import decision_for

        decisions = self.store.repeat_decisions() if self.repeat_groups else []
        out = []
        for group in self.repeat_groups:
            held = decision_for(group, decisions, self.settings.repeat_iou)
            mine = decision_for(group, [d for d in decisions if d.reviewer == self.reviewer],
                                self.settings.repeat_iou)
            out.append({"id": place_id(group.station, group.box), "station": group.station, "f": group.relpath,
                        "fid": file_id(group.relpath) if group.relpath in self.items else None,
                        "b": [round(v, 5) for v in group.box], "ar": round(group.width / group.height, 5),
                        "n": group.images, "files": list(group.files[:50]),
                        "decision": held.decision if held else None, "by": held.reviewer if held else None,
                        "mine": mine.decision if mine else None})
        return {"on": bool(self.settings.drop_repeats), "iou": self.settings.repeat_iou,
                "min_images": self.settings.repeat_min_images, "groups": out}

    def set_repeat(self, ident: str, decision: str | None) -> dict[str, Any]:
        """Keep this reviewer's decision on one place (`confirm`, `restore`, None: forget it); the next run or
        write back honours it (`repeats.Repeats.honour`)."""
        group = next((g for g in self.repeat_groups if place_id(g.station, g.box) == ident), None)
        if group is None:
            raise ReviewError(f"no place set aside as a repeat is called {ident!r} in this review")
        self._check_store()
        try:
            self.store.set_repeat_decision(group.station, group.box, decision, self.reviewer)
        except ValueError as err:
            raise ReviewError(str(err)) from None
        return self.repeats()

    # -- a review that learns (issue 34.5): the queue ordered by what a label teaches; the pictures like this one

    def features(self) -> "FeatureIndex":
        """The review's pictures as unit vectors of their stored features (review.similar), read once."""
        if self._features is None:
            self._features = FeatureIndex.read(self.store.path, self.features_of)
        return self._features

    def _learn_order(self) -> "LearnOrder":
        if self._learn is None:
            margins = []
            for seq in self.sequences:
                logits = [x for d in seq.decisions for x in _crop_logits(self.raws.get(d.relpath))]
                found = margin_of(logits, self.classes.temperature_single, self.classes.temperature_multi)
                margins.append(float((seq.decisions[0].machine or seq.decisions[0]).score) if found is None
                               else found)
            self._learn = LearnOrder.of(self.features(), [[d.relpath for d in seq.decisions]
                                                          for seq in self.sequences], margins)
        return self._learn

    def _reorder(self) -> None:
        """The queue's positions from `_frozen` on (those not shown yet) ordered by what a label teaches now."""
        learn = self._learn_order()
        learn.learn({rel for rel, h in self.human.items() if h is not None})
        tail = self.queue[self._frozen:]
        self.queue[self._frozen:] = learn.order(tail, [self.sequences[i].reviewed for i in tail])

    def _learn_summary(self) -> dict[str, Any]:
        if self.order != "learn":
            return {}
        learn = self._learn_order()
        return {"order": "learn", "without_features": int((~learn.has[np.asarray(self.queue, np.int64)]).sum())}

    def similar(self, ident: str, n: int = SIMILAR) -> dict[str, Any]:
        """The `n` pictures of the review most like the file `ident` names (cosine on the classifier's features),
        most alike first, each with its label as shown and its sequence."""
        rel = self.ids.get(ident)
        if rel is None:
            raise ReviewError(f"no file of this review has the id {str(ident)[:20]!r}")
        n = max(1, min(int(n), MAX_SIMILAR))
        index = self.features()
        if rel not in index.rows:
            raise ReviewError(f"{rel}: no features are kept for it (empty, failed, or run with --no-features, or "
                              "by models that give none): nothing to compare it with")
        out = []
        for other, cosine in index.similar(rel, n):
            seq = self.sequences[self.where[other]]
            d = next(x for x in seq.decisions if x.relpath == other)
            out.append({**self._file_json(d), "seq": seq.seqnum, "cosine": round(cosine, 3)})
        return {"file": rel, "similar": out}

    def label_files(self, relpaths: Sequence[str], key: str) -> dict[str, Any]:
        """`key` for the files given (the pictures like one, picked): one store transaction, one undo, as a batch."""
        if key not in set(label_choices(self.classes)):
            raise ReviewError(f"{key!r} is no label of model {self.classes.version}")
        unknown = [rel for rel in relpaths if rel not in self.items]
        if unknown or not relpaths:
            raise ReviewError(f"not a file of this review: {unknown[0] if unknown else '(none given)'}")
        rels = list(dict.fromkeys(relpaths))
        labellable = {rel for i in {self.where[r] for r in rels} for rel in self._labellable(self.sequences[i])}
        entries = [(rel, key) for rel in rels if rel in labellable]
        return self._apply_batch(entries, len({self.where[r] for r, _ in entries}), len(rels) - len(entries),
                                 label_text(self.classes, key, self.settings.lang))

    # -- search (issue 33.5): one rule, here, for the page's type-ahead and the batch filter's label

    def search_index(self) -> LabelSearch:
        if self._search is None:
            self._search = LabelSearch(self.classes, self.settings.lang)
        return self._search

    def search(self, text: str) -> list[dict[str, Any]]:
        """The labels a person's text names, best first ([]: no match); see review.search."""
        return self.search_index().search(text)

    def thumbnail(self, ident: str, large: bool = False, plain: bool = False) -> Path | None:
        """The file's thumbnail, or (`large`) the picture a person enlarges; made once, then from the cache."""
        rel = self.ids.get(ident)
        if rel is None:
            return None
        job = Job.of(self.items[rel], self.shown_raw(rel))
        if plain:  # the page draws the boxes itself (to edit them)
            job = replace(job, box=None)
        return self.thumbs.large(job) if large else self.thumbs.make(job)[0]

    # -- the boxes people draw (issue 33.3) and the clip a video plays (33.6)

    def shown_raw(self, rel: str) -> RawResult | None:
        """The file's result as shown: with the boxes a person drew, else the detector's."""
        return self.shown.get(rel) if rel in self.boxes else self.raws.get(rel)

    def _boxes_json(self, rel: str) -> dict[str, Any]:
        """What the enlarged view draws: the file's boxes as fractions of its image (a person's, else the
        detector's), who drew them, and for a video its key frame's time (the boxes belong to that frame)."""
        raw = self.shown_raw(rel)
        item = self.items.get(rel)
        names = {v: k for k, v in BOX_CATEGORIES.items()}
        out: dict[str, Any] = {"boxes": [], "drawn_by": None, "v": self.box_edits.get(rel, 0),
                               "video": bool(item is not None and item.is_video),
                               "key_time": None}
        if raw is None or raw.failure is not None or not (raw.width > 0 and raw.height > 0):
            return out
        for det in raw.detections:
            x1, y1, x2, y2 = det.box
            out["boxes"].append({"c": names.get(det.category, "animal"), "x": round(x1 / raw.width, 5),
                                 "y": round(y1 / raw.height, 5), "w": round((x2 - x1) / raw.width, 5),
                                 "h": round((y2 - y1) / raw.height, 5), "conf": round(float(det.conf), 3)})
        drawn = self.boxes.get(rel)
        out["drawn_by"] = drawn.reviewer if drawn is not None else None
        if out["video"] and raw.frame_rate and raw.frame_number is not None:
            out["key_time"] = round(raw.frame_number / raw.frame_rate, 3)
        return out

    def set_boxes(self, rel: str, boxes: list | None) -> dict[str, Any]:
        """Keep the boxes this reviewer drew on one file (a list of {"c": animal|person|vehicle, "x", "y", "w", "h"}
        as fractions of the image; [] no box at all; None: forget them, the detector's show again)."""
        if rel not in self.items:
            raise ReviewError(f"not a file of this review: {rel}")
        raw = self.raws.get(rel)
        if raw is None or raw.failure is not None or not (raw.width > 0 and raw.height > 0):
            raise ReviewError(f"{rel}: DeepFaune could not read this file, so no box can be drawn on it")
        if boxes is not None and len(boxes) > MAX_HUMAN_BOXES:
            raise ReviewError(f"{rel}: {len(boxes)} boxes: at most {MAX_HUMAN_BOXES} on one file")
        checked = None if boxes is None else [_box_of(rel, b) for b in boxes]
        if _identity(self.store.path) != self.store_file:
            raise ReviewError(f"result store {self.store.path} was removed or replaced while this review was open: "
                              "the boxes are not kept (they would be lost); start `deepfaune review` again")
        try:
            self.store.set_human_boxes(self.items[rel], checked, self.reviewer)
        except ValueError as err:
            raise ReviewError(str(err)) from None
        self.boxes.pop(rel, None)
        self.boxes.update(self.store.human_boxes([self.items[rel]]))
        self.box_edits[rel] = self.box_edits.get(rel, 0) + 1
        self.shown[rel] = raw  # the detector's again, unless a person's boxes lie over it (_relabel)
        self._relabel([rel])
        seq = self.sequences[self.where[rel]]
        d = next(x for x in seq.decisions if x.relpath == rel)
        return {"file": self._file_json(d), "summary": self.summary()}

    def media(self, ident: str) -> Path | None:
        """A video of the review, to play in the enlarged view: looked up by its id only (never a path given)."""
        rel = self.ids.get(ident)
        item = self.items.get(rel) if rel is not None else None
        return Path(item.path) if item is not None and item.is_video else None


def _box_of(rel: str, b: Any) -> tuple[int, tuple[float, float, float, float]]:
    """One box the page sent, checked: a known category, four numbers inside the image, not a speck."""
    if not isinstance(b, dict) or b.get("c") not in BOX_CATEGORIES:
        raise ReviewError(f"{rel}: a box needs \"c\": one of {', '.join(BOX_CATEGORIES)}")
    try:
        x, y, w, h = (float(b[k]) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        raise ReviewError(f"{rel}: a box needs numbers x, y, w, h (fractions of the image)") from None
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 and MIN_BOX <= w <= 1.0 - x + 1e-9 and MIN_BOX <= h <= 1.0 - y + 1e-9):
        raise ReviewError(f"{rel}: box x={x} y={y} w={w} h={h} is not inside the image")
    return BOX_CATEGORIES[b["c"]], (x, y, min(w, 1.0 - x), min(h, 1.0 - y))


def _crop_logits(raw: RawResult | None) -> list:
    """The classifier's logits of a result's classified crops: an image's one, a video's frames'."""
    if raw is None or raw.failure is not None:
        return []
    if raw.frames:
        return [f.logits for f in raw.frames if f.failure is None and f.logits is not None]
    return [raw.logits] if raw.logits is not None else []


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def repeats_aside(items: Sequence[MediaItem], raws: Sequence[RawResult], backend, settings: RunSettings,
                  store: ResultStore, log: Callable[[str], None]) -> tuple[list[RawResult], list]:
    """These stored outputs as `deepfaune run --drop-repeats` decides them (repeats.py, the run's own rule and
    the places people restored), and every place found (restored ones included, for the page to show). A box
    left to classify is read from the store, where the run put its outputs (detector mode "existing"); nothing
    is computed here: one the store lacks makes the file fail with the reason, as in the run."""
    from ..contracts import EXISTING_DETECTIONS
    from ..repeats import RepeatSurvey

    survey = RepeatSurvey(settings.repeat_iou, settings.repeat_min_images)
    for item, raw in zip(items, raws):
        survey.add(item, raw)
    found = survey.finish()
    honoured, _ = found.honour(store.repeat_decisions(), settings.repeat_iou)

    def classified(boxed: list[MediaItem]) -> list[RawResult | None]:
        boxes = Inference(backend, replace(settings, detector_mode=EXISTING_DETECTIONS), store, None, False, log)
        try:
            got = boxes.stored(boxed)
        finally:
            boxes.close()
        return [got.get(item.relpath) for item in boxed]

    out = honoured.apply(list(items), list(raws), classified)
    return out, found.groups


def place_id(station: str, box: Sequence[float]) -> str:
    """A URL-safe name of a place set aside as a repeat: its station and its box, as the store keys them."""
    from ..store import place_text

    return hashlib.blake2b(f"{station}\n{place_text(box)}".encode("utf-8"), digest_size=9).hexdigest()


def file_id(relpath: str) -> str:
    """A URL-safe name of a file of the review (paths never travel in URLs: only these, looked up)."""
    return hashlib.blake2b(relpath.encode("utf-8"), digest_size=9).hexdigest()


def thumbs_folder(cache: Path, source: Path) -> Path:
    """The review's thumbnail cache for `source`, in the user cache (never inside the user's data)."""
    key = hashlib.blake2b(str(source.resolve()).encode("utf-8"), digest_size=8).hexdigest()
    return cache / "review-thumbs" / key
