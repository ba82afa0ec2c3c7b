"""Many sequences at once: which sequences a filter of the review page selects.

A person selects by station, date range, the label shown, DeepFaune's score and whether someone reviewed it,
then labels them all (or accepts DeepFaune's label for each) in one step that one undo takes back. The filter
runs here, over every sequence of the review (not only the queue: "accept every fox above 0.95" is about the
sequences the queue leaves out), so the page never needs the season in the browser.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..types import UNDEFINED

if TYPE_CHECKING:
    from .session import ReviewSequence

MAX_BATCH_FILES = 20_000  # files one batch may label: a station's season; more is asked for in parts
MAX_TEXT = 200  # characters of a station or a label in a filter
FILTER_FIELDS = ("station", "date_from", "date_to", "label", "score_from", "score_below", "reviewed", "queue")


class FilterError(ValueError):
    """A filter the page sent that cannot be read; the message names the field and what it expects."""


@dataclass(frozen=True)
class BatchFilter:
    """Which sequences a batch takes; every condition given must hold (none given: every sequence).

    Attributes:
        station: The station (or camera, or folder) as the page shows it, exactly.
        date_from: The sequence's first date on or after this day.
        date_to: The sequence's first date on or before this day.
        label: The key of the label the sequence shows now (a person's, else DeepFaune's); "undefined" takes
            every undefined sequence ("bird undefined" included).
        score_from: DeepFaune's score of the sequence at least this.
        score_below: DeepFaune's score of the sequence below this.
        reviewed: True: only sequences a person labelled (every file); False: only the others.
        queue: Only the sequences in the review queue.
    """

    station: str = ""
    date_from: date | None = None
    date_to: date | None = None
    label: str = ""
    score_from: float | None = None
    score_below: float | None = None
    reviewed: bool | None = None
    queue: bool = False

    @classmethod
    def parse(cls, data: Any, label_key: Callable[[str], str]) -> "BatchFilter":
        """The filter of a request body's `filter` object; `label_key` reads a label as typed (any language)
        into a key, or raises FilterError."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise FilterError("filter: an object is expected")
        unknown = sorted(set(data) - set(FILTER_FIELDS))
        if unknown:
            raise FilterError(f"filter: {unknown[0]!r} is no filter; filters: {', '.join(FILTER_FIELDS)}")
        given = {k: v for k, v in data.items() if v not in (None, "")}
        label = _text(given, "label")
        return cls(station=_text(given, "station"), date_from=_day(given, "date_from"),
                   date_to=_day(given, "date_to"), label=label_key(label) if label else "",
                   score_from=_score(given, "score_from"), score_below=_score(given, "score_below"),
                   reviewed=_flag(given, "reviewed"), queue=bool(_flag(given, "queue")))

    def matches(self, seq: "ReviewSequence", queued: bool) -> bool:
        if self.queue and not queued:
            return False
        if self.station and seq.station != self.station:
            return False
        head = seq.decisions[0]
        if self.date_from is not None or self.date_to is not None:
            day = next((d.date.date() for d in seq.decisions if d.date is not None), None)
            if day is None or (self.date_from and day < self.date_from) or (self.date_to and day > self.date_to):
                return False
        if self.label:
            key = head.prediction_key
            shown = UNDEFINED if key == UNDEFINED or key.endswith(" " + UNDEFINED) else key
            if shown != self.label:
                return False
        if self.score_from is not None or self.score_below is not None:
            score = float((head.machine or head).score)
            if (self.score_from is not None and score < self.score_from) or (
                    self.score_below is not None and score >= self.score_below):
                return False
        return self.reviewed is None or seq.reviewed == self.reviewed


def _text(given: Mapping[str, Any], name: str) -> str:
    value = given.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise FilterError(f"filter {name}: text of at most {MAX_TEXT} printable characters is expected")
    return value.strip()


def _day(given: Mapping[str, Any], name: str) -> date | None:
    if name not in given:
        return None
    value = given[name]
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError(f"filter {name} {str(value)[:20]!r}: a day as YYYY-MM-DD is expected") from None


def _score(given: Mapping[str, Any], name: str) -> float | None:
    if name not in given:
        return None
    value = given[name]
    try:
        score = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        score = None
    if score is None or not 0.0 <= score <= 1.0:
        raise FilterError(f"filter {name} {str(value)[:20]!r}: a score from 0 to 1 is expected")
    return score


def _flag(given: Mapping[str, Any], name: str) -> bool | None:
    value = given.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if value in ("yes", "no"):
        return value == "yes"
    raise FilterError(f"filter {name} {str(value)[:20]!r}: true or false is expected")
