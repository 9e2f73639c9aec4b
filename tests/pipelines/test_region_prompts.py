"""What the vlm labeler shows and asks for one pseudo box: the crop with context, or the whole image with the box
drawn and its coordinates in the prompt."""
import numpy as np
import pytest

from pipelines.crops import crop_window
from pipelines.region_prompts import (RegionPromptStyle, box_coordinates, check_template, draw_box, format_prompt,
                                      region_view)

STYLE = RegionPromptStyle(region_prompt="crop", crop_template="What is this?", box_template="What is in {box}?")


def image(height: int = 100, width: int = 200) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 200, (height, width, 3), dtype=np.uint8)


def test_coordinates_in_pixels_or_thousandths_of_the_image():
    assert box_coordinates((10.4, 20.6, 150.0, 99.5), 200, 100, "pixels") == (10, 21, 150, 100)
    # Florence-2 / Qwen2-VL's 0-1000 grid: x / width and y / height, floored, the far edge at 999.
    assert box_coordinates((10.4, 20.6, 150.0, 100.0), 200, 100, "thousandths") == (52, 206, 750, 999)
    assert box_coordinates((-5, -5, 500, 500), 200, 100, "pixels") == (0, 0, 200, 100)


def test_a_template_gets_the_box_whole_or_each_coordinate():
    assert format_prompt("at {box}?", (10, 20, 30, 40), 200, 100, "pixels") == "at (10, 20, 30, 40)?"
    assert format_prompt("<loc_{x0}><loc_{y0}><loc_{x1:03d}>", (10, 20, 30, 40), 200, 100, "thousandths") == \
        "<loc_50><loc_200><loc_150>"
    assert format_prompt("no box here", (10, 20, 30, 40), 200, 100, "pixels") == "no box here"


@pytest.mark.parametrize("template", ["at {where}", "at {box", "at {0}"])
def test_a_template_with_unknown_fields_is_an_error_naming_the_key(template):
    with pytest.raises(ValueError, match="captioner.vlm.box_prompt"):
        check_template(template, "captioner.vlm.box_prompt")


def test_the_crop_view_is_the_context_crop_and_asks_the_crop_question():
    pixels = image()
    view, prompt = region_view(pixels, (50, 20, 90, 60), STYLE)
    left, top, right, bottom = crop_window((50, 20, 90, 60), "context", 200, 100, 1.5)
    assert prompt == "What is this?"
    assert np.array_equal(np.asarray(view), pixels[top:bottom, left:right])


def test_the_box_view_is_the_whole_image_with_the_outline_drawn_and_the_box_in_the_prompt():
    pixels = image()
    style = RegionPromptStyle(region_prompt="box", crop_template="", box_template="What is in {box}?",
                              box_units="pixels", box_colour="red", box_line_width=0.01)
    view, prompt = region_view(pixels, (50, 20, 90, 60), style)
    drawn = np.asarray(view)
    assert prompt == "What is in (50, 20, 90, 60)?" and drawn.shape == pixels.shape
    # 0.01 of the longer side (200 px): a 2-pixel red outline on the box's edges, nothing else changed.
    assert (drawn[20:22, 50:90] == (255, 0, 0)).all() and (drawn[20:60, 88:90] == (255, 0, 0)).all()
    assert np.array_equal(drawn[23:58, 53:87], pixels[23:58, 53:87])
    assert np.array_equal(drawn[:, :49], pixels[:, :49]) and np.array_equal(drawn[61:], pixels[61:])
    assert np.array_equal(pixels, image())  # the decoded image itself is left alone


def test_an_outline_is_at_least_one_pixel_even_on_a_tiny_image():
    drawn = np.asarray(draw_box(np.zeros((10, 10, 3), np.uint8), (2, 2, 8, 8), "red", 0.001))
    assert (drawn[2, 2:8] == (255, 0, 0)).all() and (drawn[3:7, 3:7] == 0).all()
