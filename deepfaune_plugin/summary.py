"""What a finished run counted and produced (`RunSummary`, `Tally`): read by the pipeline that fills it, the
writers that close on it and the commands that print it, so none of them imports another for it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from .api import RunResults
from .types import Decision, Manifest, Problem, RawResult


@dataclass
class Tally:
    """What the console, the run record and the summary need, counted as blocks of results go by."""

    files: int = 0
    sequences: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: Files with a result that the user should still look at (a truncated JPEG decoded as far as it goes,
    #: a video only PyAV could read): (relpath, the `warning` column's text).
    warned: list[tuple[str, str]] = field(default_factory=list)
    sequences_per_label: Counter = field(default_factory=Counter)  # what an ecologist counts
    files_per_label: Counter = field(default_factory=Counter)

    def add(self, decisions: Sequence[Decision], raws: Mapping[str, RawResult] | None = None) -> None:
        """Whole sequences only: a sequence never spans two calls.  `raws` (by relpath) gives the warnings."""
        seen: set[int] = set()
        for d in decisions:
            self.files += 1
            if d.failure:
                self.failures.append((d.relpath, d.failure))
                continue
            raw = raws.get(d.relpath) if raws else None
            if raw is not None and raw.warnings:
                self.warned.append((d.relpath, "; ".join(raw.warnings)))
            self.files_per_label[d.prediction] += 1
            if d.seqnum not in seen:
                seen.add(d.seqnum)
                self.sequences += 1
                self.sequences_per_label[d.prediction] += 1


@dataclass
class RunSummary:
    """A finished run.  `results.decisions`/`results.raw` hold every file's only when the run kept them
    (`run(keep_results=True)`, the default for library use); `tally` always has the counts."""

    results: RunResults
    manifest: Manifest
    written: list[Path]
    elapsed: float
    problems: list[Problem] = field(default_factory=list)
    review_files: list[Path] = field(default_factory=list)  # the review page and the run record
    tally: Tally | None = None
    #: `--drop-repeats`: the places whose boxes were set aside (`repeats.RepeatGroup`, by station); None: off.
    repeats: list | None = None

    def __post_init__(self) -> None:
        if self.tally is None:
            self.tally = Tally()
            self.tally.add(self.results.decisions, self.results.raw)

    def _counts(self) -> Tally:
        assert self.tally is not None, "set by __post_init__"
        return self.tally

    @property
    def failures(self) -> list[tuple[str, str]]:
        return list(self._counts().failures)

    @property
    def skipped(self) -> int:
        """Media files of the source left without a result before any model saw them (missing, refused,
        not fetched): the problems that are not mere notes."""
        return sum(p.skipped for p in self.problems)

    @property
    def complete(self) -> bool:
        """Every file of the source has a result (warnings allowed): what exit status 0 promises."""
        return not self._counts().failures and self.skipped == 0

    def label_counts(self) -> Counter:
        """Sequences per label, failures excluded."""
        return Counter(self._counts().sequences_per_label)
