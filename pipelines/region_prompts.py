"""What an image-text model is shown for one pseudo box, and what it is asked: the `vlm` labeler's region prompts.

Two ways to point a model at a region (config key captioner.vlm.region_prompt):
- `crop`: the box cut out with context (pipelines.crops, as the other captioners see it), with a prompt that asks
  for "the object in this image";
- `box`: the whole image with the box drawn on it and its coordinates in the prompt (visual prompting: a drawn
  mark is what CLIP-style models attend to, Shtedritski et al. 2023, "What does CLIP know about a red circle?";
  coordinates in the text are how grounded models such as Qwen2-VL and Florence-2 are asked about a region).

The ShapesOV teacher (shapesov/teachers/vlm_examples.py) learns from views made by these same functions, so at
labelling time it is asked exactly what it learned from.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from pipelines.crops import crop_window, cut
from schemas.tables import CropMode

RegionPrompt = Literal["crop", "box"]
REGION_PROMPTS = ("crop", "box")
# How coordinates are written: image pixels, or thousandths of the image's width and height (the 0-1000 grid
# Qwen2-VL's grounding answers use; Florence-2 quantises to 1000 bins, 0-999, the same numbers floored).
BoxUnits = Literal["pixels", "thousandths"]
# Placeholders a template may use: the box as "(x0, y0, x1, y1)", or each coordinate on its own.
TEMPLATE_FIELDS = ("box", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class RegionPromptStyle:
    """How a pseudo box becomes a view and a prompt (the region half of captioner.vlm)."""

    region_prompt: RegionPrompt
    crop_template: str
    box_template: str
    crop_mode: CropMode = "context"
    context_scale: float = 1.5
    box_units: BoxUnits = "thousandths"
    box_colour: str = "red"
    box_line_width: float = 0.005  # of the image's longer side, at least one pixel

    @property
    def template(self) -> str:
        return self.crop_template if self.region_prompt == "crop" else self.box_template


def check_template(template: str, key: str) -> None:
    """A template's placeholders must be TEMPLATE_FIELDS (a format spec such as {x0:03d} is fine); an error naming
    `key` otherwise, before any model is loaded."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise ValueError(f"{key} = {template!r} is not a valid template: {error}") from error
    unknown = sorted({name for name in fields if name not in TEMPLATE_FIELDS})
    if unknown:
        raise ValueError(f"{key} = {template!r} uses {unknown}; a template may use {list(TEMPLATE_FIELDS)} "
                         f"(write literal braces as {{{{ and }}}})")


def box_coordinates(box, width: int, height: int, units: BoxUnits) -> tuple[int, int, int, int]:
    """xyxy image pixels → four integers in `units`, inside the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if units == "pixels":
        return (int(round(min(max(x0, 0), width))), int(round(min(max(y0, 0), height))),
                int(round(min(max(x1, 0), width))), int(round(min(max(y1, 0), height))))
    if units == "thousandths":
        def scaled(value: float, size: int) -> int:
            return int(min(max(value / size * 1000.0, 0.0), 999.0))
        return scaled(x0, width), scaled(y0, height), scaled(x1, width), scaled(y1, height)
    raise ValueError(f"unknown box units {units!r} (config key captioner.vlm.box_units); use pixels or thousandths")


def format_prompt(template: str, box, width: int, height: int, units: BoxUnits) -> str:
    """The template with the box's coordinates filled in (a template without placeholders is returned as is)."""
    x0, y0, x1, y1 = box_coordinates(box, width, height, units)
    return template.format(box=f"({x0}, {y0}, {x1}, {y1})", x0=x0, y0=y0, x1=x1, y1=y1)


def draw_box(pixels: np.ndarray, box, colour: str, line_width: float) -> Image.Image:
    """pixels: (H, W, 3) uint8 → a copy with the box's outline drawn, `line_width` x the longer side thick."""
    image = Image.fromarray(pixels)
    width = max(1, int(round(line_width * max(image.width, image.height))))
    x0, y0, x1, y1 = (float(v) for v in box)
    ImageDraw.Draw(image).rectangle((x0, y0, max(x1 - 1, x0), max(y1 - 1, y0)), outline=ImageColor.getrgb(colour),
                                    width=width)
    return image


def region_view(pixels: np.ndarray, box, style: RegionPromptStyle) -> tuple[Image.Image, str]:
    """One pseudo box of an image (pixels: (H, W, 3) uint8, box: xyxy pixels) → (the image the model sees, the
    prompt that asks about it)."""
    height, width = pixels.shape[:2]
    prompt = format_prompt(style.template, box, width, height, style.box_units)
    if style.region_prompt == "crop":
        window = crop_window(box, style.crop_mode, width, height, style.context_scale)
        return Image.fromarray(np.ascontiguousarray(cut(pixels, window))), prompt
    if style.region_prompt == "box":
        return draw_box(pixels, box, style.box_colour, style.box_line_width), prompt
    raise ValueError(f"unknown region prompt {style.region_prompt!r} (config key captioner.vlm.region_prompt); "
                     f"use one of {list(REGION_PROMPTS)}")
