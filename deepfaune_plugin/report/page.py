"""deepfaune-report.html: one self-contained page (inline style, script and data) beside the outputs.

The page never touches the network: its data is embedded as JSON, thumbnails are relative links
into a cache folder next to it, and a click opens the original file by a relative link (or a
JPEG preview when people must be blurred or a browser cannot show the format).  So the folder can
be copied to a USB stick, with the photos, and still works.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import quote

from .._version import __version__
from ..atomic import StagedFile
from ..boxes import normalised_box
from ..types import ANIMAL
from .record import RECORD_NAME
from .thumbs import Job, ThumbCache
from .view import ViewBuilder

if TYPE_CHECKING:  # imported when a page evaluates (ReportBuilder._evaluate)
    from ..evaluate import Evaluation

REPORT_NAME = "deepfaune-report.html"
THUMBS_DIR = ".deepfaune-thumbs"  # a dot folder: the folder host never reads it back as media


def page_href(target: Path, base: Path) -> str:
    """A URL for `target` relative to the folder `base` (a file: URL when no relative path exists)."""
    target, base = Path(os.path.abspath(target)), Path(os.path.abspath(base))
    try:
        rel = os.path.relpath(target, base)
    except ValueError:  # another drive on Windows
        return target.as_uri()
    return "/".join(quote(os.fsencode(part)) for part in Path(rel).parts)  # bytes: non-UTF-8 names work too


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON that cannot end its <script> element early or be read as markup."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


_DATA = "\x00DATA\x00"  # no title or asset can hold a NUL: the one place the data goes


def _page_parts(view: Mapping[str, Any]) -> tuple[str, str]:
    """The page's text before and after its data."""
    parts = {
        "TITLE": html.escape(f"DeepFaune report — {Path(view.get('source', '')).name or view.get('source', '')}"),
        "VERSION": html.escape(__version__),
        # --every-animal and --drop-repeats add their own parts: a page without them is as it always was
        "CSS": _asset("report.css") + ("\n" + _asset("animals.css") if "every_animal" in view else ""),
        "JS": _asset("report.js") + ("\n" + _asset("repeats.js") if "repeats" in view else "")
        + ("\n" + _asset("animals.js") if "every_animal" in view else ""),
        "DATA": _DATA,
    }
    # one pass over the template only: text inside the parts is never taken for a placeholder
    text = re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _asset("template.html"))
    head, _, tail = text.partition(_DATA)
    return head, tail


def render_page(view: Mapping[str, Any]) -> str:
    head, tail = _page_parts(view)
    return head + embed_json(view) + tail


class ReportBuilder:
    """deepfaune-report.html made as results come: each block's thumbnails are made and its sequences
    written to a spool file at once, and the page is put together at the end, so its size is not bound
    by memory."""

    def __init__(self, out_dir: Path, threshold: float, blur_humans: bool = False, thumbs_dir: Path | None = None,
                 labels: Mapping[str, str | tuple[str, ...]] | None = None):
        self.out_dir = Path(out_dir)
        self.labels = dict(labels or {})  # the source's human labels (Manifest.human_labels): the evaluation
        self.evaluation: Evaluation | None = None
        self.label_notes: list[str] = []
        self.blur = blur_humans
        self.cache = ThumbCache(Path(thumbs_dir) if thumbs_dir else self.out_dir / THUMBS_DIR, blur=blur_humans)
        self.spool = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.builder = ViewBuilder(threshold, emit=self._spool)

    def _spool(self, sequence: dict[str, Any]) -> None:
        if self.spool.tell():
            self.spool.write(",")
        self.spool.write(embed_json(sequence))

    def add(self, items, results) -> None:
        """`items`: the media of `results` (whole sequences), in any order."""
        jobs = [Job.of(item, raw) for item in items
                if (raw := results.raw.get(item.relpath)) is not None and not raw.failure]
        made = self.cache.make_all(jobs)
        by_rel = {job.relpath: job for job in jobs}

        def links(rel: str) -> tuple[str | None, str | None, bool]:
            job = by_rel.get(rel)
            if job is None:
                return None, None, False
            thumb, preview = made.get(rel, (None, None))
            # never fall back to the original when a blurred preview was due but could not be made
            previewed = self.cache.needs_preview(job)
            full = preview if previewed else job.path
            return (page_href(thumb, self.out_dir) if thumb else None,
                    page_href(full, self.out_dir) if full else None,
                    job.video and not previewed)  # the video itself: the full view plays it

        self.builder.add({item.relpath: item for item in items}, results.raw, results.decisions, links,
                         results.animals)
        # the labels people gave in `deepfaune review`, which this run writes: they are the source's labels now
        written = {d.relpath: d.human.key for d in results.decisions if d.human is not None}
        if self.labels or written:
            self._evaluate(items, results, written)

    def _evaluate(self, items, results, written: Mapping[str, str]) -> None:
        """The block's decisions re-decided at every threshold against the human labels (no model runs)."""
        from ..evaluate import Evaluation, truth_keys

        if self.evaluation is None:
            truth, problems = truth_keys(self.labels, results.classes, results.settings.bird)
            self.label_notes = [f"{p.relpath}: {p.reason}" for p in problems[:20]]
            self.evaluation = Evaluation(truth, results.classes, results.settings)
        self.evaluation.truth.update(written)
        try:
            self.evaluation.add(items, results.raw)
        except ValueError as err:  # a block that cannot be re-decided: the page goes on without its evaluation
            self.labels, self.evaluation = {}, None
            self.label_notes = [f"no evaluation: {err}"]

    def write(self, summary, name: str = REPORT_NAME, record: str = RECORD_NAME) -> Path:
        """The page, atomically, into out_dir as `name` (linking to the run record `record`); its path."""
        extra = {
            "record": record,
            "outputs": [{"name": Path(p).name, "href": page_href(p, self.out_dir)} for p in summary.written],
            "blurred": self.blur,
        }
        if self.evaluation is not None and self.evaluation.labelled:
            extra["evaluation"] = {**self.evaluation.view(), "notes": self.label_notes}
        if getattr(summary, "repeats", None) is not None:  # --drop-repeats: a page without it is unchanged
            extra["repeats"] = self._repeats(summary.repeats)
        view = self.builder.view(summary, extra)
        head, tail = _page_parts(view)
        data = embed_json(view)
        staged = StagedFile(self.out_dir / name)
        try:
            with open(staged.tmp, "w", encoding="utf-8") as out:
                out.write(head)
                out.write(data[:-1] + ',"sequences":[')  # the view is an object: its closing brace comes last
                self.spool.seek(0)
                shutil.copyfileobj(self.spool, out)
                out.write("]}" + tail)
        except BaseException:
            staged.discard()
            raise
        return staged.commit()

    def _repeats(self, groups) -> list[dict[str, Any]]:
        """The boxes set aside as repeats, one entry per place (repeats.RepeatGroup): a thumbnail with its box."""
        out = []
        for group in groups:
            job = Job(group.relpath, Path(group.path), group.width, group.height, group.pixel_box, ANIMAL,
                      tuple(group.people))
            thumb, preview = self.cache.make_all([job]).get(group.relpath, (None, None))
            full = preview if self.cache.needs_preview(job) else job.path
            out.append({"station": group.station, "f": group.relpath,
                        "t": page_href(thumb, self.out_dir) if thumb else None,
                        "h": page_href(full, self.out_dir) if full else None,
                        "b": list(normalised_box(group.pixel_box, group.width, group.height, decimals=5)),
                        "n": group.images, "files": list(group.files)})
        return out

    def close(self) -> None:
        self.spool.close()


def write_report(summary, out_dir: Path, blur_humans: bool = False, thumbs_dir: Path | None = None,
                 name: str = REPORT_NAME, record: str = RECORD_NAME) -> Path:
    """Write the page (deepfaune-report.html unless `name`) for a run whose results were kept, making the
    missing thumbnails."""
    report = ReportBuilder(out_dir, summary.results.settings.threshold, blur_humans, thumbs_dir,
                           labels=getattr(summary.manifest, "human_labels", None))
    try:
        report.add(summary.manifest.items, summary.results)
        return report.write(summary, name, record)
    finally:
        report.close()
