"""Classifier pre-processing: DeepFaune's square crop, Pillow's bicubic resize, ImageNet scaling.

The crop arithmetic runs in float32 on the box as ultralytics returns it (numpy float32), with
int() truncation after growing and before clipping, exactly as DeepFaune's ``cropSquareCVtoPIL``.
The resize must be Pillow's: torchvision's ``Resize`` on a PIL image is a plain ``Image.resize``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # ImageNet, as float32 tensors in torchvision
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
#: `--every-animal`: a crop whose shorter side is under this many pixels is not classified.  DeepFaune stretches
#: every crop to 182 px (224 for 1.5): under 32 px that is more than 5.7 times, so each 14-px patch of the ViT
#: sees under 2.5 source pixels across and its answer comes from the interpolation, not from the animal.
MIN_CROP_PX = 32


def square_box(box: Sequence[float], img_w: int, img_h: int) -> tuple[int, int, int, int]:
    """Pixel bounds (x1, y1, x2, y2) of DeepFaune's crop for a detector box.

    The short side grows by int((long - short) / 2) on each side; no margin, no padding: a crop
    at the border is clipped and may stay rectangular.
    """
    x1, y1, x2, y2 = (np.float32(v) for v in box)
    xsize, ysize = x2 - x1, y2 - y1
    if xsize > ysize:
        grow = int((xsize - ysize) / np.float32(2))
        y1, y2 = y1 - np.float32(grow), y2 + np.float32(grow)
    if ysize > xsize:
        grow = int((ysize - xsize) / np.float32(2))
        x1, x2 = x1 - np.float32(grow), x2 + np.float32(grow)
    return max(0, int(x1)), max(0, int(y1)), min(int(x2), img_w), min(int(y2), img_h)


def too_small(bounds: Sequence[int]) -> bool:
    """Whether a crop (`square_box` bounds, after clipping to the image) is too small to classify (MIN_CROP_PX)."""
    x1, y1, x2, y2 = bounds
    return min(x2 - x1, y2 - y1) < MIN_CROP_PX


def crop_rgb(image_bgr: np.ndarray, bounds: Sequence[int]) -> np.ndarray:
    """The RGB uint8 pixels inside ``square_box`` bounds (x1, y1, x2, y2) of a BGR image."""
    x1, y1, x2, y2 = (int(v) for v in bounds)
    crop = image_bgr[y1:y2, x1:x2, ::-1]
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        h, w = image_bgr.shape[:2]
        raise ValueError(f"crop {tuple(bounds)} is empty in a {w}x{h} image")
    return np.ascontiguousarray(crop)


def resize_pillow(crop: np.ndarray, size: int) -> np.ndarray:
    """Stretch an RGB uint8 crop to size x size with Pillow's bicubic filter (antialiased when shrinking)."""
    arr = np.ascontiguousarray(crop, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise ValueError(f"expected a non-empty uint8 HxWx3 RGB crop, got shape {arr.shape}")
    return np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.BICUBIC))


def normalise(batch: np.ndarray) -> np.ndarray:
    """uint8 [B,S,S,3] (or one [S,S,3]) RGB -> float32 [B,3,S,S], as ToTensor then Normalize.

    Float32 at every step: x / 255, then (x - mean) / std with float32 constants.
    """
    arr = np.asarray(batch)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 [B,S,S,3], got shape {arr.shape}")
    x = arr.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    x = (x - MEAN[None, :, None, None]) / STD[None, :, None, None]
    return np.ascontiguousarray(x, dtype=np.float32)
