"""Host adapter for a plain folder tree: DeepFaune's own workflow, writing its result table."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

from deepfaune_plugin.api import (MEDIA_SUFFIXES, AnimalTableWriter, Host, HostOption, Manifest, MediaItem, Problem,
                                  RunResults, TableWriter, animals_path, count_media, hookimpl, iter_media_blocks,
                                  result_table, write_table)

DEFAULT_OUTPUT = "deepfaune.csv"


class FolderHost(Host):
    name = "folder"
    description = "a folder tree of images and videos; writes DeepFaune's result table (CSV, or XLSX by --output)"
    options: tuple[HostOption, ...] = ()
    labels_held = "a plain folder holds none"
    priority = 0  # the fallback: any folder is a plain folder, so specific hosts win --host auto

    def detect(self, source: Path) -> bool:
        return Path(source).is_dir()

    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        root = Path(source)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        problems: list[Problem] = []
        count = count_media(root, MEDIA_SUFFIXES)  # for the progress line; the walk itself is lazy
        return Manifest.from_blocks(root, _blocks(root, problems), count, problems=problems, host=self.name)

    def default_output(self, manifest: Manifest) -> Path:
        return manifest.root / DEFAULT_OUTPUT

    def open_writer(self, manifest: Manifest, options: Mapping[str, Any]) -> "FolderWriter":
        return FolderWriter(options.get("output") or self.default_output(manifest))

    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        target = options.get("output") or self.default_output(manifest)
        written = [write_table(result_table(results), target)]
        if results.animals is not None:
            animals = AnimalTableWriter(animals_path(target))
            animals.add(results.animals, results.standin)
            written += animals.close(results.standin)
        return written


class FolderWriter:
    """DeepFaune's table as the run goes and, with --every-animal, NAME-animals.csv beside it (one row per
    animal box); without the option the table is all there is, written exactly as before."""

    def __init__(self, target: Path):
        self.table = TableWriter(target)
        self.target = self.table.target
        self.animals: AnimalTableWriter | None = None

    def add(self, batch: RunResults) -> None:
        self.table.add(batch)
        if batch.animals is not None:
            self._animals().add(batch.animals, batch.standin)

    def _animals(self) -> AnimalTableWriter:
        if self.animals is None:
            self.animals = AnimalTableWriter(animals_path(self.target))
        return self.animals

    def close(self, results: RunResults) -> list[Path]:
        if results.settings.every_animal:
            self._animals()  # a run without any file still writes the header
        written = self.table.close(results)
        return written + (self.animals.close(results.standin) if self.animals is not None else [])

    def abort(self) -> None:
        self.table.abort()
        if self.animals is not None:
            self.animals.abort()


def _blocks(root: Path, problems: list[Problem]) -> Iterator[list[MediaItem]]:
    for block in iter_media_blocks(root, MEDIA_SUFFIXES, problems=problems):
        # the relpath's folder ("." at the root): Path(rel).parent.as_posix() of a walked relpath, without a Path each
        yield [MediaItem(path=path, relpath=rel, group=rel.rpartition("/")[0] or ".") for path, rel in block]


@hookimpl
def register_hosts(register):
    register(FolderHost())
