"""An outside deepfaune-plugin plugin, complete and small: a host and a backend, importing only the public api.

- host `filelist`: a folder holding `files.txt` (one relative media path per line, `#` comments) is a source;
  the results go to `predictions.json` beside it, written whole or not at all.
- backend `textlogits`: each "image" is a text file holding the model's logits (or `empty`, `person`);
  a stand-in for a real model, so the example runs anywhere.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from deepfaune_plugin.api import (ANIMAL, PERSON, Backend, ClassTable, Detection, Host, HostError, HostOption, Manifest,
                                  MediaItem, Problem, RawResult, RunResults, RunSettings, UnsafePathError,
                                  atomic_output, hookimpl, safe_relative)

LIST_NAME = "files.txt"
OUTPUT_NAME = "predictions.json"


class FileListHost(Host):
    name = "filelist"
    description = "a folder with files.txt (one media path per line); writes predictions.json"
    priority = 40  # --host auto asks higher priorities first; the built-in folder host is the last resort
    options = (HostOption("min-score", "write only decisions scoring at least this (default: all)"),)

    def detect(self, source: Path) -> bool:
        return (Path(source) / LIST_NAME).is_file()

    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        root = Path(source)
        items, problems = [], []
        for number, line in enumerate((root / LIST_NAME).read_text(encoding="utf-8").splitlines(), 1):
            name = line.split("#", 1)[0].strip()
            if not name:
                continue
            try:  # a name from a user's file stays inside the root, links included
                path = safe_relative(root, name, manifest=root / LIST_NAME)
            except UnsafePathError as err:
                problems.append(Problem(relpath=name, reason=f"{LIST_NAME} line {number}: {err}"))
                continue
            items.append(MediaItem(path=path, relpath=name, group=str(Path(name).parent)))
        return Manifest(root=root, items=items, host=self.name, problems=problems)

    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        minimum = options.get("min_score")
        try:
            minimum = None if minimum is None else float(minimum)
        except ValueError:
            raise HostError(f"--min-score: {minimum!r} is not a number") from None
        rows = {d.relpath: {"label": d.prediction, "score": d.score, "sequence": d.seqnum, "failure": d.failure}
                for d in results.decisions if minimum is None or (d.score or 0) >= minimum}
        target = Path(options.get("output") or manifest.root / OUTPUT_NAME)
        with atomic_output(target) as tmp:  # the old file stays whole until the new one is complete
            tmp.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
        return [target]


class _TextLogits:
    def __init__(self, settings: RunSettings):
        self.classes = _class_table(settings.model_version)
        self.info = {"backend": "textlogits", "model_version": settings.model_version}

    def predict(self, items: Iterable[MediaItem]) -> Iterator[RawResult]:
        for item in items:
            try:
                text = item.path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as err:
                yield RawResult(relpath=item.relpath, failure=f"cannot read: {err}")
                continue
            if text == "empty":
                yield RawResult(relpath=item.relpath, width=10, height=10)
            elif text == "person":
                yield RawResult(relpath=item.relpath, width=10, height=10,
                                detections=[Detection((0.0, 0.0, 5.0, 5.0), 0.9, PERSON)], selected=0)
            else:
                try:
                    logits = np.array([float(v) for v in text.split()], dtype=np.float32)
                except ValueError:
                    yield RawResult(relpath=item.relpath, failure="not a list of logits")
                    continue
                if logits.shape != (self.classes.num_classes,):
                    yield RawResult(relpath=item.relpath, failure=f"{logits.size} logits, the model has "
                                                                  f"{self.classes.num_classes} classes")
                    continue
                yield RawResult(relpath=item.relpath, width=10, height=10, logits=logits, selected=0,
                                detections=[Detection((1.0, 1.0, 9.0, 9.0), 0.95, ANIMAL)])

    def close(self) -> None:
        pass


def _class_table(version: str) -> ClassTable:
    """A three-class table of our own: a backend brings its own classes, labels per language and temperatures."""
    words = {"human": ("human", "humain"), "vehicle": ("vehicle", "véhicule"), "empty": ("empty", "vide"),
             "undefined": ("undefined", "indéfini")}
    return ClassTable(version=f"example-{version}", names={"en": ("cat", "dog", "fox"), "fr": ("chat", "chien",
                                                                                           "renard")},
                      bird_names=None, non_animal={k: {"en": en, "fr": fr} for k, (en, fr) in words.items()})


class TextLogitsBackend(Backend):
    name = "textlogits"
    description = "logits read from text files (an example backend)"

    def open(self, settings: RunSettings) -> _TextLogits:
        return _TextLogits(settings)


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    register(TextLogitsBackend())


@hookimpl
def register_hosts(register: Callable[[Host], None]) -> None:
    register(FileListHost())
