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
from importlib import resources
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

from .._version import __version__
from ..atomic import write_bytes_atomic as write_atomic
from .record import RECORD_NAME
from .thumbs import Job, ThumbCache
from .view import build_view

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


def render_page(view: Mapping[str, Any]) -> str:
    parts = {
        "TITLE": html.escape(f"DeepFaune review: {Path(view.get('source', '')).name or view.get('source', '')}"),
        "VERSION": html.escape(__version__),
        "CSS": _asset("report.css"),
        "JS": _asset("report.js"),
        "DATA": embed_json(view),
    }
    # one pass over the template only: text inside the parts is never taken for a placeholder
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _asset("template.html"))


def write_report(summary, out_dir: Path, blur_humans: bool = False, thumbs_dir: Path | None = None) -> Path:
    """Write deepfaune-report.html into out_dir, making the missing thumbnails; return the page's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = summary.results
    jobs = [Job.of(item, raw) for item in summary.manifest.items
            if (raw := results.raw.get(item.relpath)) is not None and not raw.failure]
    cache = ThumbCache(Path(thumbs_dir) if thumbs_dir else out_dir / THUMBS_DIR, blur=blur_humans)
    made = cache.make_all(jobs)
    by_rel = {job.relpath: job for job in jobs}

    def links(rel: str) -> tuple[str | None, str | None]:
        job = by_rel.get(rel)
        if job is None:
            return None, None
        thumb, preview = made.get(rel, (None, None))
        # never fall back to the original when a blurred preview was due but could not be made
        full = preview if cache.needs_preview(job) else job.path
        return (page_href(thumb, out_dir) if thumb else None, page_href(full, out_dir) if full else None)

    extra = {
        "record": RECORD_NAME,
        "outputs": [{"name": Path(p).name, "href": page_href(p, out_dir)} for p in summary.written],
        "blurred": blur_humans,
    }
    target = out_dir / REPORT_NAME
    text = render_page(build_view(summary, links=links, extra=extra))
    return write_atomic(target, text.encode("utf-8"))
