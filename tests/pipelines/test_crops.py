import math

import numpy as np
import pytest

from pipelines.crops import (clipped_at_border, context_window, crop_window, cut, is_whole_image, square_window,
                            tight_window)


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


# A 640 x 480 photo (COCO's most common size) with the boxes a photo holds: a person standing (200 x 400), a car
# (300 x 180), a dog (150 x 110), a cup (40 x 50) and a table filling the lower half (560 x 230).
PHOTO = (640, 480)
PHOTO_BOXES = {"person": (60, 60, 260, 460), "car": (300, 250, 600, 430), "dog": (420, 40, 570, 150),
               "cup": (100, 300, 140, 350), "table": (40, 240, 600, 470)}


def test_the_square_cut_to_the_image_swallows_every_large_object_of_a_photo():
    """OADP's side sqrt(8 x area), cut to the image: the person, the car and the table all get the whole image."""
    width, height = PHOTO
    whole = {name for name, box in PHOTO_BOXES.items() if is_whole_image(square_window(box, width, height), *PHOTO)}
    assert whole == {"person", "car", "table"}
    assert {name for name, box in PHOTO_BOXES.items() if clipped_at_border(box, "square", width, height)} == whole


def test_the_capped_square_keeps_a_window_of_its_own_for_each_object_and_leaves_small_ones_alone():
    width, height = PHOTO
    for name, box in PHOTO_BOXES.items():
        window = square_window(box, width, height, max_area=0.5)
        left, top, right, bottom = window
        assert not is_whole_image(window, width, height), name
        assert left <= box[0] and top <= box[1] and right >= box[2] and bottom >= box[3], name  # the box is inside
        # At most half the image's area, or the square of the box's longer side when that is larger.
        longer = max(box[2] - box[0], box[3] - box[1])
        assert (right - left) * (bottom - top) <= max(0.5 * width * height, longer ** 2) + 2 * (width + height), name
    # Boxes under 1/16 of the image keep OADP's square exactly: the cap never reaches them.
    for name in ("dog", "cup"):
        assert square_window(PHOTO_BOXES[name], width, height, 0.5) == square_window(PHOTO_BOXES[name], width, height)
    assert not any(clipped_at_border(box, "square", width, height, square_max_area=0.5)
                   for name, box in PHOTO_BOXES.items() if name != "table")


def test_clipped_means_the_window_asked_for_does_not_fit():
    assert clipped_at_border((0, 0, 40, 40), "context", 100, 100, context_scale=1.5)  # grows past the corner
    assert not clipped_at_border((40, 40, 60, 60), "context", 100, 100, context_scale=1.5)
    assert not clipped_at_border((0, 0, 10, 10), "square", 200, 200)  # shifted inside, not cut
    assert not clipped_at_border((0, 0, 100, 50), "tight", 100, 50)
