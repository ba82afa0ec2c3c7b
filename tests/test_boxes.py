"""Pixel boxes as fractions of the image, the three ways the outputs keep them in 0..1."""
from __future__ import annotations

import pytest

from deepfaune_plugin.boxes import normalised_box

W, H = 4000, 3000


@pytest.mark.parametrize("clamp", ["none", "values", "box"])
def test_a_box_inside_the_image_is_the_same_whatever_the_clamp(clamp):
    assert normalised_box((1000.0, 750.0, 2000.0, 1500.0), W, H, decimals=6, clamp=clamp) == (0.25, 0.25, 0.25, 0.25)


def test_decimals_round_each_value():
    assert normalised_box((1000, 0, 2000, 1000), 3000, 3000, decimals=4) == (0.3333, 0.0, 0.3333, 0.3333)
    assert normalised_box((1000, 0, 2000, 1000), 3000, 3000, decimals=6) == (0.333333, 0.0, 0.333333, 0.333333)


def test_a_box_over_the_bottom_right_edge():
    box = (3900.0, 2900.0, 4100.0, 3100.0)
    assert normalised_box(box, W, H, decimals=6) == (0.975, 0.966667, 0.05, 0.066667)  # as the detector gave it
    assert normalised_box(box, W, H, decimals=4, clamp="values") == (0.975, 0.9667, 0.05, 0.0667)  # keeps its size
    assert normalised_box(box, W, H, decimals=6, clamp="box") == (0.975, 0.966667, 0.025, 0.033333)  # cut to the image


def test_a_box_over_the_top_left_edge():
    box = (-100.0, -300.0, 400.0, 300.0)
    assert normalised_box(box, W, H, decimals=6) == (-0.025, -0.1, 0.125, 0.2)
    assert normalised_box(box, W, H, decimals=4, clamp="values") == (0.0, 0.0, 0.125, 0.2)
    assert normalised_box(box, W, H, decimals=6, clamp="box") == (0.0, 0.0, 0.1, 0.1)


def test_a_box_outside_the_image_has_no_width_once_cut():
    box = (4100.0, 100.0, 4200.0, 200.0)
    assert normalised_box(box, W, H, decimals=6, clamp="box") == (1.0, 0.033333, 0.0, 0.033333)
    assert normalised_box(box, W, H, decimals=4, clamp="values") == (1.0, 0.0333, 0.025, 0.0333)


def test_cutting_takes_the_size_between_the_corners_as_fractions():
    # 346 px of a 1280 px image is 0.2703125: (x2 - x1) / W and x2/W - x1/W fall on either side of the tie
    box = (884.0, 2579.0, 1230.0, 2772.0)
    assert normalised_box(box, 1280, 3000, decimals=6) == (0.690625, 0.859667, 0.270313, 0.064333)
    assert normalised_box(box, 1280, 3000, decimals=6, clamp="box") == (0.690625, 0.859667, 0.270312, 0.064333)


def test_values_are_python_floats():
    x, y, w, h = normalised_box((1, 2, 3, 4), 10, 10, decimals=6)
    assert all(type(v) is float for v in (x, y, w, h)) and (x, y, w, h) == (0.1, 0.2, 0.2, 0.2)


def test_unknown_clamp_is_refused():
    with pytest.raises(ValueError, match="clamp must be"):
        normalised_box((0, 0, 1, 1), 10, 10, decimals=6, clamp="corners")
