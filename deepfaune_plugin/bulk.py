"""Building a season's worth of objects at once without the cyclic garbage collector walking them over and over.

Opening a review, or evaluating, on 100,000 files makes millions of small objects (items, raw outputs, decisions)
that all stay alive.  CPython's collector runs every few hundred allocations and, as the objects pile up, walks
every live one again: on a season that was about 40 % of the CPU time of opening a review (benchmarks/RESULTS.md,
issue 33.7).  They hold no reference cycles, so the collector has nothing to find in them; it runs again as usual
afterwards.  Nothing computed changes: only when memory of cyclic garbage is given back.
"""
from __future__ import annotations

import gc
from contextlib import ContextDecorator, contextmanager
from typing import Iterator


class without_gc(ContextDecorator):
    """The cyclic garbage collector paused for the block (or the decorated function); nested uses, and a collector
    someone else turned off, are left as they were."""

    def __enter__(self) -> "without_gc":
        self.paused = gc.isenabled()
        if self.paused:
            gc.disable()
        return self

    def __exit__(self, *exc) -> None:
        if self.paused:
            gc.enable()


@contextmanager
def kept_for_the_block() -> Iterator[None]:
    """Everything alive now (a review's season: a million objects) set aside from the cyclic collector for the
    block, then handed back to it.  While a review is served its session lives on; without this, each full
    collection that a person's labels trigger walks it all again (about half a second on 100,000 files, the
    first one right after opening)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
