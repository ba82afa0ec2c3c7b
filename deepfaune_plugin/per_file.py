"""One file's failure is that file's, never the run's: the boundary every caller of `Predictor.predict` uses.

A backend is meant to turn a file it cannot handle into a `RawResult` with a `failure` (DeepFaune's does, for its
decoding, letterboxing, cropping and inference); one that raises instead (a plugin's, or a case it missed) would
end the run, and every re-run would stop at the same file.  Here such an exception becomes the failure of the
file whose result was due (a predictor yields in its items' order) and the backend goes on with the next file.
A `DeepfauneError` (a model missing or breaking its contract, a device that cannot run) is the run's and is
raised as it is.
"""
from __future__ import annotations

from typing import Iterator, Sequence

from .api import Predictor
from .errors import DeepfauneError
from .types import MediaItem, RawResult


def predict_each(predictor: Predictor, items: Sequence[MediaItem]) -> Iterator[tuple[MediaItem, RawResult]]:
    """(item, its raw output) for each item, in order, while the predictor gives them."""
    items = list(items)
    start = 0
    while start < len(items):
        try:
            for raw in predictor.predict(iter(items[start:])):
                start += 1
                yield items[start - 1], raw
            return  # the predictor has nothing more (a short answer is the caller's to check)
        except DeepfauneError:
            raise
        except Exception as err:
            if start >= len(items):  # raised after the last result: every file has its own
                return
            item = items[start]
            start += 1
            yield item, RawResult(relpath=item.relpath, failure=f"failed: {type(err).__name__}: {err}")
