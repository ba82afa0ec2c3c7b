"""Detector boxes as the output formats state them: fractions of the image, top-left origin."""
from __future__ import annotations

from typing import Literal, Sequence

Clamp = Literal["none", "values", "box"]


def normalised_box(box: Sequence[float], width: int, height: int, *, decimals: int,
                   clamp: Clamp = "none") -> tuple[float, float, float, float]:
    """Pixels (x1, y1, x2, y2) -> (x, y, w, h) as fractions of a `width` x `height` image, rounded to `decimals`.

    `clamp` is how a format keeps a box in 0..1:
    - "none": DeepFaune's table reports the box as its detector gave it (its columns describe the
      detection, not a format's range);
    - "values": MegaDetector's file (read by Timelapse) clamps each of x, y, w, h to 0..1;
    - "box": Camtrap DP cuts the box to the image: corners clamped as fractions, the size taken between
      them (a box outside the image gets w or h 0).
    This package's detectors and existing-box reader only give boxes inside the image, where "values"
    changes nothing; "box" then differs from the others in the last bit of w and h (x2/W - x1/W is not
    (x2 - x1)/W), which rounding shows at exact ties, so each format keeps its own arithmetic.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if clamp == "box":
        x1, x2 = (min(max(v / width, 0.0), 1.0) for v in (x1, x2))
        y1, y2 = (min(max(v / height, 0.0), 1.0) for v in (y1, y2))
        values: tuple[float, ...] = (x1, y1, x2 - x1, y2 - y1)
    else:
        values = (x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height)
        if clamp == "values":
            values = tuple(min(max(v, 0.0), 1.0) for v in values)
        elif clamp != "none":
            raise ValueError(f"clamp must be 'none', 'values' or 'box', got {clamp!r}")
    x, y, w, h = (round(v, decimals) for v in values)
    return x, y, w, h
