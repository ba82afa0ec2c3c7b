"""Classifier pre-processing: DeepFaune's square crop, Pillow bicubic resize, ImageNet scaling."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from deepfaune_plugin.engine.crop import crop_rgb, normalise, resize_pillow, square_box

W, H = 100, 80


@pytest.mark.parametrize(
    "box, expected",
    [
        ((10.5, 20.25, 50.75, 30.0), (10, 5, 50, 45)),  # wide: grows int(30.5 / 2) = 15 up and down
        ((30.0, 10.0, 40.0, 60.0), (10, 10, 60, 60)),  # tall: grows 20 left and right
        ((0.0, 20.0, 10.0, 60.0), (0, 20, 25, 60)),  # touching left: clipped, not square, no padding
        ((20.0, 0.0, 60.0, 10.0), (20, 0, 60, 25)),  # touching top
        ((90.0, 20.0, 100.0, 60.0), (75, 20, 100, 60)),  # touching right
        ((20.0, 70.0, 60.0, 80.0), (20, 55, 60, 80)),  # touching bottom
        ((10.9, 10.9, 20.9, 40.9), (0, 10, 30, 40)),  # int() truncates after growing: 0.9 -> 0, 30.9 -> 30
        ((20.0, 20.0, 50.0, 50.0), (20, 20, 50, 50)),  # already square
        ((10.0, 10.0, 20.0, 15.0), (10, 8, 20, 17)),  # odd difference: grows int(2.5) = 2 each side, 10x9
    ],
)
def test_square_box(box, expected):
    assert square_box(box, W, H) == expected


def test_square_box_runs_in_float32_like_deepfaune():
    # y2 = 1023.99994 (a float32), grown by 1500: float32 rounds the sum to 2524.0, so int() gives
    # 2524 where float64 arithmetic would give 2523.
    y2 = float(np.float32(1024 - 2 ** -14))
    assert square_box((0.0, 0.0, 4024.0, y2), 5000, 3000) == (0, 0, 4024, 2524)


def test_crop_rgb_cuts_and_swaps_channels():
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = np.arange(W, dtype=np.uint8)[None, :]  # blue = x
    img[..., 2] = np.arange(H, dtype=np.uint8)[:, None]  # red = y
    crop = crop_rgb(img, (75, 20, 100, 60))
    assert crop.shape == (40, 25, 3) and crop.flags.c_contiguous
    assert crop[0, 0].tolist() == [20, 0, 75]  # RGB: red = y, blue = x
    assert crop[-1, -1].tolist() == [59, 0, 99]
    with pytest.raises(ValueError):
        crop_rgb(img, (50, 10, 50, 20))


def test_resize_pillow_pixels():
    # 2x2 RGB upscaled to 4x4 with Pillow's bicubic filter: values pinned (Pillow 11-13 agree).
    tiny = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 0, 0], [0, 0, 255]]], np.uint8)
    out = resize_pillow(tiny, 4)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert out[..., 0].tolist() == [[0, 40, 215, 255], [53, 84, 171, 202], [202, 171, 84, 53], [255, 215, 40, 0]]
    assert out[..., 1].tolist() == [[0, 58, 220, 255], [0, 42, 160, 202], [0, 11, 42, 53], [0, 0, 0, 0]]
    assert out[..., 2].tolist() == [[0, 53, 202, 255]] * 4


def test_resize_pillow_is_pillow_not_opencv_when_shrinking():
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, size=(97, 61, 3), dtype=np.uint8)
    out = resize_pillow(crop, 24)
    ref = np.asarray(Image.fromarray(crop).resize((24, 24), Image.Resampling.BICUBIC))
    assert np.array_equal(out, ref)
    # OpenCV's bicubic does not antialias: clearly different pixels.
    cv = cv2.resize(crop, (24, 24), interpolation=cv2.INTER_CUBIC)
    assert np.abs(out.astype(int) - cv.astype(int)).mean() > 10


def test_normalise_extremes_per_channel():
    batch = np.zeros((2, 3, 3, 3), np.uint8)
    batch[1] = 255
    x = normalise(batch)
    assert x.shape == (2, 3, 3, 3) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[0, :, 1, 1] == pytest.approx([-2.117904, -2.0357141, -1.8044444], abs=1e-6)
    assert x[1, :, 2, 0] == pytest.approx([2.2489083, 2.4285715, 2.64], abs=1e-6)
    # Bit-exact float32 order of ToTensor + Normalize: (x / 255 - mean) / std.
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    assert np.array_equal(x[1, :, 0, 0], (np.float32(255) / np.float32(255) - mean) / std)


def test_normalise_layout_and_single_image():
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 1] = (255, 0, 0)  # a red pixel at row 0, column 1
    x = normalise(img)
    assert x.shape == (1, 3, 2, 2)
    assert x[0, 0, 0, 1] == pytest.approx(2.2489083)  # red channel, same pixel
    assert x[0, 1, 0, 1] == pytest.approx(-2.0357141)
    with pytest.raises(ValueError):
        normalise(np.zeros((2, 2), np.uint8))
