"""Detector pre-processing: ultralytics' "minimum rectangle" letterbox.

DeepFaune hands its ``.pt`` detector to ultralytics, whose predictor letterboxes with ``auto=True``:
the image is scaled so its long side fits ``size`` (upscaling allowed), then each dimension is padded
only up to the next multiple of the stride, not to a square.  A 4000x3000 photo becomes a 960x736
input.  The pad split (``round(p/2 - 0.1)`` before, ``round(p/2 + 0.1)`` after) puts the odd pixel
at the bottom/right.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114  # ultralytics' grey


@dataclass(frozen=True)
class Letterbox:
    """Where the resized image sits inside the network input (all in pixels)."""

    orig_h: int
    orig_w: int
    new_h: int  # size after resizing, before padding
    new_w: int
    top: int
    bottom: int
    left: int
    right: int
    ratio: float  # resize factor new/orig

    @property
    def input_h(self) -> int:
        return self.new_h + self.top + self.bottom

    @property
    def input_w(self) -> int:
        return self.new_w + self.left + self.right


def _split(pad: int) -> tuple[int, int]:
    half = pad / 2
    return int(round(half - 0.1)), int(round(half + 0.1))


def plan_letterbox(h: int, w: int, size: int = 960, stride: int = 32) -> Letterbox:
    """The letterbox ultralytics' LetterBox(auto=True) would apply to an h x w image."""
    if h <= 0 or w <= 0:
        raise ValueError(f"image has no pixels ({w}x{h})")
    r = min(size / h, size / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    if new_w < 1 or new_h < 1:
        raise ValueError(f"image {w}x{h} is too elongated to letterbox at {size} px")
    # Padding is taken modulo the stride of what a square size x size input would need.
    top, bottom = _split((size - new_h) % stride)
    left, right = _split((size - new_w) % stride)
    return Letterbox(h, w, new_h, new_w, top, bottom, left, right, r)


def letterbox(image_bgr: np.ndarray, size: int = 960, stride: int = 32) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 HxWx3 image -> (float32 [1,3,H,W] RGB in [0,1], Letterbox).

    Same order as ultralytics: bilinear resize of the uint8 BGR image (skipped when the size is
    unchanged), constant border 114, then BGR->RGB, CHW, float32 and a true division by 255.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 HxWx3 BGR image, got {image_bgr.dtype} {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    lb = plan_letterbox(h, w, size, stride)
    img = image_bgr
    if (lb.new_w, lb.new_h) != (w, h):
        img = cv2.resize(img, (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(img, lb.top, lb.bottom, lb.left, lb.right, cv2.BORDER_CONSTANT,
                             value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    chw = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))[None]
    return chw.astype(np.float32) / np.float32(255), lb
