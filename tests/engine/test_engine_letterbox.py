"""The detector letterbox: ultralytics' minimum rectangle, pad split and pixel order."""
from __future__ import annotations

import numpy as np
import pytest

from deepfaune_plugin.engine.letterbox import Letterbox, letterbox, plan_letterbox


@pytest.mark.parametrize(
    "w, h, new, inp, pads",
    [
        (4000, 3000, (960, 720), (960, 736), (8, 8, 0, 0)),  # 4:3 landscape: 8 px top and bottom
        (1920, 1080, (960, 540), (960, 544), (2, 2, 0, 0)),
        (3000, 4000, (720, 960), (736, 960), (0, 0, 8, 8)),  # portrait: pads left/right
        (1920, 372, (960, 186), (960, 192), (3, 3, 0, 0)),  # pad 6 -> 3/3
        (1920, 374, (960, 187), (960, 192), (2, 3, 0, 0)),  # pad 5 -> 2/3: the odd pixel goes below
        (300, 200, (960, 640), (960, 640), (0, 0, 0, 0)),  # small images are upscaled
    ],
)
def test_plan_letterbox(w, h, new, inp, pads):
    lb = plan_letterbox(h, w, 960)
    assert (lb.new_w, lb.new_h) == new
    assert (lb.input_w, lb.input_h) == inp
    assert (lb.top, lb.bottom, lb.left, lb.right) == pads
    assert lb.input_h % 32 == 0 and lb.input_w % 32 == 0


def test_plan_letterbox_ratio_and_other_sizes():
    lb = plan_letterbox(3000, 4000, 960)
    assert lb.ratio == pytest.approx(0.24)
    assert plan_letterbox(3000, 4000, 1280) == Letterbox(3000, 4000, 960, 1280, 0, 0, 0, 0, 0.32)
    # 1000x630 at 960: resized to 960x605, padded 1 above and 2 below.
    lb = plan_letterbox(630, 1000, 960)
    assert (lb.new_h, lb.top, lb.bottom, lb.input_h) == (605, 1, 2, 608)


def test_plan_letterbox_rejects_degenerate_images():
    with pytest.raises(ValueError):
        plan_letterbox(0, 100)
    with pytest.raises(ValueError, match="elongated"):
        plan_letterbox(1, 5000, 960)  # resized height rounds to 0


def test_letterbox_pixels_pad_and_rgb_order():
    # 1920x374 BGR image: blue channel 10, green 20, red 30 -> input 960x192, pad 2 above, 3 below.
    img = np.empty((374, 1920, 3), np.uint8)
    img[...] = (10, 20, 30)
    tensor, lb = letterbox(img, 960)
    assert tensor.shape == (1, 3, 192, 960) and tensor.dtype == np.float32
    assert (lb.top, lb.bottom) == (2, 3)
    grey = np.float32(114) / np.float32(255)
    assert np.all(tensor[0, :, :2, :] == grey)  # top pad
    assert np.all(tensor[0, :, -3:, :] == grey)  # bottom pad
    inside = tensor[0, :, 2:-3, :]
    # RGB order: channel 0 is red (30), channel 2 is blue (10); uniform image stays uniform.
    assert np.all(inside[0] == np.float32(30) / np.float32(255))
    assert np.all(inside[1] == np.float32(20) / np.float32(255))
    assert np.all(inside[2] == np.float32(10) / np.float32(255))


def test_letterbox_skips_resize_when_size_is_unchanged():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(100, 960, 3), dtype=np.uint8)  # already 960 wide
    tensor, lb = letterbox(img, 960)
    assert (lb.new_h, lb.new_w, lb.top, lb.bottom) == (100, 960, 14, 14)
    expected = img[..., ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    assert np.array_equal(tensor[0, :, 14:-14, :], expected)  # untouched pixels, exactly


def test_letterbox_rejects_non_bgr_input():
    with pytest.raises(ValueError):
        letterbox(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        letterbox(np.zeros((10, 10, 3), np.float32))
