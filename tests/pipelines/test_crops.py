import math

import numpy as np
import pytest

from pipelines.crops import context_window, crop_window, cut, square_window, tight_window


def test_tight_covers_the_box_with_integer_pixels():
    assert tight_window((10.2, 5.7, 20.1, 15.0), 100, 50) == (10, 5, 21, 15)
    assert tight_window((99.5, 49.5, 99.9, 49.9), 100, 50) == (99, 49, 100, 50)  # at least one pixel


def test_square_side_is_sqrt_8_area_and_stays_inside():
    # Integer windows cover the float square, so each side may grow by up to two pixels.
    left, top, right, bottom = square_window((40, 40, 50, 50), 200, 200)
    side = math.sqrt(8 * 100)
    assert right - left == pytest.approx(side, abs=2.0) and bottom - top == pytest.approx(side, abs=2.0)
    assert (left + right) / 2 == pytest.approx(45, abs=1)
    # Near the corner the square is shifted, not shrunk.
    left, top, right, bottom = square_window((0, 0, 10, 10), 200, 200)
    assert (left, top) == (0, 0) and right - left == pytest.approx(side, abs=2.0)
    # Never larger than the image.
    assert square_window((0, 0, 90, 40), 100, 50) == (0, 0, 100, 50)


def test_context_scales_about_the_centre():
    assert context_window((40, 40, 60, 60), 200, 200, 2.0) == (30, 30, 70, 70)
    assert context_window((0, 0, 20, 20), 200, 200, 2.0) == (0, 0, 30, 30)


def test_cut_is_a_view_of_the_decoded_array():
    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    crop = cut(image, crop_window((1, 1, 3, 4), "tight", 6, 5))
    assert crop.shape == (3, 2, 3) and np.shares_memory(crop, image)
    with pytest.raises(ValueError, match="crop.mode"):
        crop_window((1, 1, 3, 4), "round", 6, 5)
