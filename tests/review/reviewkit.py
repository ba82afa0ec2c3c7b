"""What the review tests share: a small season with known answers, run once into a result store."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from PIL import Image

from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.testing import StoredLogitsBackend, logits_for, registry_with, run_cli


def table(src: Path) -> dict[str, dict]:
    with open(src / "deepfaune.csv", newline="", encoding="utf-8") as fh:
        return {row["filename"]: row for row in csv.DictReader(fh)}


def fox_at(p: float) -> list[float]:
    """Logits DeepFaune 1.4 decides as fox with probability `p` (one image: temperature 1.10, 38 classes)."""
    values = [0.0] * 38
    values[list(load_card("1.4").class_table().labels("en")).index("fox")] = 1.10 * math.log(p * 37 / (1 - p))
    return values


def jpeg(path: Path, when: str, grey: int) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = when  # Exif IFD, DateTimeOriginal
    Image.new("RGB", (80, 60), (grey, grey, grey)).save(path, "JPEG", exif=exif.tobytes())


def make_season(tmp_path: Path):
    """One-image sequences: a sure fox (not queued), fox at 0.72 (undefined at 0.8), fox at 0.85 (near), an
    empty one, a sure fox dated 1980 (a clock never set); and a two-image sequence whose images disagree."""
    src = tmp_path / "season"
    for i, station in enumerate("abcdef"):
        (src / station).mkdir(parents=True)
        jpeg(src / station / "IMG_0001.JPG", "1980:01:01 00:00:00" if station == "f" else f"2024:05:0{i + 1} 10:00:00",
             40 * i)
    jpeg(src / "e" / "IMG_0002.JPG", "2024:05:05 10:00:05", 7)
    backend = StoredLogitsBackend({
        "a/IMG_0001.JPG": logits_for("1.4", "fox", high=20.0), "b/IMG_0001.JPG": fox_at(0.72),
        "c/IMG_0001.JPG": fox_at(0.85), "d/IMG_0001.JPG": "empty", "f/IMG_0001.JPG": logits_for("1.4", "fox", high=20.0),
        "e/IMG_0001.JPG": logits_for("1.4", "fox", high=9.0), "e/IMG_0002.JPG": logits_for("1.4", "wolf", high=8.0)})
    registry = registry_with(backends=[backend])
    store = tmp_path / "results.sqlite"
    ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report", "--lang", "en"],
                  registry)
    assert ran.code == 0, ran.stderr
    assert backend.opened == 1
    return src, registry, store, backend


