"""One run, in one direction: manifest → media → raw outputs → decisions → host writer."""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from .api import Host, RunResults, RunSettings
from .decisions import decide_run
from .errors import DeepfauneError
from .exifdate import read_exif_date
from .plugins import PluginError, Registry, default_registry
from .progress import Progress
from .types import ClassTable, Manifest, MediaItem, Problem, RawResult


class RunError(DeepfauneError):
    """A run cannot start or finish (bad source, models missing...): a message for the user, not a traceback."""


@dataclass
class RunSummary:
    results: RunResults
    manifest: Manifest
    written: list[Path]
    elapsed: float
    problems: list[Problem] = field(default_factory=list)

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(d.relpath, d.failure) for d in self.results.decisions if d.failure]

    def label_counts(self) -> Counter:
        """Sequences per label (what an ecologist counts), failures excluded."""
        firsts = {}
        for d in self.results.decisions:
            if not d.failure:
                firsts.setdefault(d.seqnum, d.prediction)
        return Counter(firsts.values())

    def file_label_counts(self) -> Counter:
        return Counter(d.prediction for d in self.results.decisions if not d.failure)


def resolve_host(registry: Registry, name: str, source: Path) -> Host:
    if name != "auto":
        return registry.host(name)
    candidates = [r.obj for r in registry.hosts.values() if _safe_detect(r.obj, source)]
    if not candidates:
        raise RunError(f"{source}: no host recognises this source (is it a folder, a Timelapse root, a package?); "
                       f"choose one with --host ({', '.join(sorted(registry.hosts))})")
    best = max(getattr(h, "priority", 10) for h in candidates)
    top = [h for h in candidates if getattr(h, "priority", 10) == best]
    if len(top) > 1:
        raise RunError(f"{source}: several hosts recognise this source ({', '.join(h.name for h in top)}); "
                       "choose one with --host")
    return top[0]


def _safe_detect(host: Host, source: Path) -> bool:
    try:
        return bool(host.detect(source))
    except Exception:  # a plugin's detect() must never break auto-detection
        return False


def media_date(item: MediaItem) -> tuple[datetime | None, str]:
    """EXIF DateTimeOriginal first (as DeepFaune), then the date the host knows (e.g. Timelapse's DateTime)."""
    try:
        date = read_exif_date(item.path)
    except OSError:
        date = None
    if date is not None:
        return date, "exif"
    if item.timestamp is not None:
        return item.timestamp, "host"
    return None, ""


def check_settings(settings: RunSettings, classes: ClassTable) -> None:
    if settings.lang not in classes.languages:
        raise RunError(f"language {settings.lang!r} is not available for model {classes.version}; "
                       f"choose one of {', '.join(classes.languages)}")
    known = {label.lower() for labels in classes.names.values() for label in labels}
    unknown = [name for name in settings.exclude if name.lower() not in known]
    if unknown:
        raise RunError(f"--exclude: unknown species {', '.join(map(repr, unknown))} for model {classes.version}; "
                       f"known: {', '.join(classes.labels(settings.lang))}")


def run(
    source: Path,
    settings: RunSettings,
    host: str = "auto",
    host_options: Mapping[str, Any] | None = None,
    output: Path | None = None,
    registry: Registry | None = None,
    progress: bool = True,
    log=None,
) -> RunSummary:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    registry = registry or default_registry()
    host_options = dict(host_options or {})
    source = Path(source)
    if not source.exists():
        raise RunError(f"{source}: no such file or folder")
    started = datetime.now()
    t0 = time.monotonic()
    try:
        adapter = resolve_host(registry, host, source)
        backend = registry.backend(settings.backend)
    except PluginError as err:
        raise RunError(str(err)) from err

    try:
        manifest = adapter.read(source, host_options)
    except DeepfauneError:
        raise
    except (OSError, ValueError) as err:
        raise RunError(f"{source}: cannot read as a {adapter.name} source: {err}") from err
    for problem in manifest.problems:
        log(f"warning: {problem.relpath}: {problem.reason}")
    predictor = backend.open(settings)
    try:
        classes = predictor.classes
        check_settings(settings, classes)
        if predictor.info.get("standin"):
            log(_STANDIN_BANNER)
        items = manifest.items
        bar = Progress(len(items)) if progress and items else None
        raws: list[RawResult] = []
        for item, raw in zip(items, predictor.predict(iter(items))):
            if raw.failure is None:
                raw.date, raw.date_source = media_date(item)
            raws.append(raw)
            if bar:
                bar.update(failed=raw.failure is not None)
        if bar:
            bar.close()
        if len(raws) != len(items):
            raise RunError(f"backend {backend.name!r} returned {len(raws)} results for {len(items)} files")
        info = dict(predictor.info)
    finally:
        predictor.close()

    decisions = decide_run(items, raws, classes, settings)
    results = RunResults(
        settings=settings, classes=classes, raw={r.relpath: r for r in raws}, decisions=decisions,
        backend_info=info, output=Path(output) if output else None, started=started, finished=datetime.now(),
    )
    written = adapter.write(manifest, results, host_options)
    return RunSummary(results=results, manifest=manifest, written=written, elapsed=time.monotonic() - t0,
                      problems=list(manifest.problems))


_STANDIN_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!! STAND-IN MODELS: random weights with DeepFaune's input/output contract.\n"
    "!! Every label and score of this run is MEANINGLESS. Install the real models:\n"
    "!!     deepfaune models install 1.4\n" + "!" * 78 + "\n"
)
