"""Build test images in code: JPEGs with EXIF dates and coloured blobs the stand-in detector sees.

The stand-in detector (models/README.md) reports an animal on a saturated red blob, a person on
green and a vehicle on blue; the background here is grey noise, which it ignores.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)  # RGB


def noise_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(90, 150, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]


def make_jpeg(path: Path, width: int = 800, height: int = 600, date: datetime | None = None,
              blobs: list[tuple[tuple[int, int, int], tuple[int, int, int, int]]] = (), seed: int = 0,
              quality: int = 90) -> Path:
    """blobs: [(rgb colour, (x1, y1, x2, y2)), ...] painted on grey noise."""
    pixels = noise_rgb(width, height, seed)
    for colour, (x1, y1, x2, y2) in blobs:
        pixels[y1:y2, x1:x2] = colour
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if date is not None:
        exif.get_ifd(0x8769)[36867] = f"{date.year:04d}:" + date.strftime("%m:%d %H:%M:%S")  # as cameras pad it
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality, exif=exif.tobytes())
    return path
