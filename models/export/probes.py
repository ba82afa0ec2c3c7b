"""Deterministic probe inputs for parity checks: camera-trap-like scenes made in code.

Real photographs would be better probes, and `--probes DIR` takes them; without them, smooth
random fields with textured blobs exercise every channel and value range the models see.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deepfaune_plugin.engine.crop import normalise, resize_pillow

IMAGE_SIZES = ((3000, 4000), (1080, 1920), (480, 640), (1200, 900))  # (h, w): landscape, HD, small, portrait
_EXTS = {".jpg", ".jpeg", ".png"}


def scene(h: int, w: int, seed: int) -> np.ndarray:
    """A BGR uint8 scene: a smooth colour field, ground-like gradient, a few textured ellipses."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(30, 220, size=(max(2, h // 200), max(2, w // 200), 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    img += np.linspace(-25, 25, h, dtype=np.float32)[:, None, None]
    img += rng.normal(0, 6, size=(h, w, 3)).astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):
        centre = (int(rng.integers(w // 8, w - w // 8)), int(rng.integers(h // 8, h - h // 8)))
        axes = (int(rng.integers(w // 20, w // 5)), int(rng.integers(h // 20, h // 5)))
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def probe_images(seed: int = 0, sizes=IMAGE_SIZES, directory: Path | None = None, limit: int = 8) -> list[np.ndarray]:
    """BGR images for detector parity: those in `directory` when given, else made-up scenes."""
    if directory is not None:
        paths = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in _EXTS)[:limit]
        images = [img for p in paths if (img := cv2.imread(str(p), cv2.IMREAD_COLOR)) is not None]
        if images:
            return images
    return [scene(h, w, seed + i) for i, (h, w) in enumerate(sizes)]


def probe_crops(size: int, count: int = 8, seed: int = 0, images: list[np.ndarray] | None = None) -> np.ndarray:
    """float32 [count,3,size,size] classifier inputs, made exactly as the engine makes crops.

    Crops of varied shapes (square, wide, tall, tiny, larger than `size`) from probe scenes, then
    Pillow bicubic resize and ImageNet normalisation.
    """
    rng = np.random.default_rng(seed)
    images = images or probe_images(seed)
    crops = []
    for i in range(count):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        ch = int(rng.integers(max(8, h // 40), max(9, h // 2)))
        cw = int(np.clip(ch * rng.choice([1.0, 0.6, 1.7, 1.0]), 8, w))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        rgb = np.ascontiguousarray(img[y:y + ch, x:x + cw, ::-1])
        crops.append(resize_pillow(rgb, size))
    return normalise(np.stack(crops))
