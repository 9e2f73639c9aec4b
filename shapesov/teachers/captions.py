"""Captions the teachers learn from: CLIP's "alt texts" and ClipCap's descriptions of a crop.

CLIP captions name every shape, novel ones included, the way web alt-text named every object real CLIP saw.
Crops that frame no object are captioned as background: by ClipCap with its texture ("a patch of striped
background") and the colour of a shape they show part of ("part of a red shape on a striped background"), by CLIP
without either ("a photo of the background."): captions whose every noun is a stop word of the noun parser
(pipelines/nouns.py), so a caption of nothing yields no pseudo label.
Every caption has a fixed id (`clip_caption_table()`, `clipcap_captions()`) so tokenisation happens once, not per
step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from shapesov.classes import COLOUR_NAMES, SHAPE_NAMES
from shapesov.render import BACKGROUND_KINDS
from shapesov.teachers.crops import NO_COLOUR, NO_SHAPE

# "a photo of a {}." is the pipeline's default prompt; the others give the text tower a little variety.
# len(SHAPE_TEMPLATES) is a multiple of len(BACKGROUND_TEMPLATES): sample_caption_ids draws both with one number.
SHAPE_TEMPLATES = ("a photo of a {shape}.", "a {shape}.", "a {shape} shape.", "a photo of the {shape}.",
                   "a drawing of a {shape}.", "a {shape} on a textured background.")
COLOUR_SHAPE_TEMPLATES = ("a photo of a {colour} {shape}.", "a {colour} {shape}.",
                          "a {colour} {shape} on a textured background.", "a picture of a {colour} {shape}.")
# CLIP's captions of nothing name no texture: every one is true of every crop of nothing, so CLIP learns "no object
# here" without spending its little capacity on telling textures apart (ClipCap names them: it only has to guess).
BACKGROUND_TEMPLATES = ("a photo of the background.", "a background.", "a patch of background.")
CLIPCAP_TEMPLATES = ("a {colour} {shape} on a textured background.", "a {colour} {shape}.")
CLIPCAP_BACKGROUND_TEMPLATES = ("a patch of {texture} background.", "a {texture} background.")
CLIPCAP_PART_TEMPLATES = ("part of a {colour} shape on a {texture} background.",)
# How a caption names each background kind of shapesov/render.py (adjectives: the parser finds no noun in them).
TEXTURE_WORDS = {"noise": "mottled", "stripes": "striped", "checker": "checkered", "gradient": "shaded",
                 "dots": "dotted"}
TEXTURES = tuple(TEXTURE_WORDS[kind] for kind in BACKGROUND_KINDS)


@dataclass(frozen=True)
class CaptionTable:
    """All CLIP training captions. texts[i] names shape shape_ids[i] (NO_SHAPE: a caption of nothing) and colour
    colour_ids[i] (or NO_COLOUR)."""

    texts: tuple[str, ...]
    shape_ids: torch.Tensor  # (C,) long
    colour_ids: torch.Tensor  # (C,) long

    def lookup(self, shape_id: int, colour_id: int, template_index: int) -> int:
        """The id of a shape caption (shape_id >= 0; template of SHAPE_TEMPLATES without a colour, else of
        COLOUR_SHAPE_TEMPLATES) or of a caption of nothing (shape_id NO_SHAPE; template of BACKGROUND_TEMPLATES)."""
        per_shape = len(SHAPE_TEMPLATES) + len(COLOUR_NAMES) * len(COLOUR_SHAPE_TEMPLATES)
        if shape_id == NO_SHAPE:
            return len(SHAPE_NAMES) * per_shape + template_index
        offset = template_index if colour_id == NO_COLOUR else (
            len(SHAPE_TEMPLATES) + colour_id * len(COLOUR_SHAPE_TEMPLATES) + template_index)
        return shape_id * per_shape + offset


def clip_caption_table() -> CaptionTable:
    texts, shapes, colours = [], [], []

    def add(text: str, shape: int, colour: int) -> None:
        texts.append(text)
        shapes.append(shape)
        colours.append(colour)

    for shape_id, shape in enumerate(SHAPE_NAMES):
        for template in SHAPE_TEMPLATES:
            add(template.format(shape=shape), shape_id, NO_COLOUR)
        for colour_id, colour in enumerate(COLOUR_NAMES):
            for template in COLOUR_SHAPE_TEMPLATES:
                add(template.format(colour=colour, shape=shape), shape_id, colour_id)
    for template in BACKGROUND_TEMPLATES:
        add(template, NO_SHAPE, NO_COLOUR)
    return CaptionTable(tuple(texts), torch.tensor(shapes), torch.tensor(colours))


def sample_caption_ids(table: CaptionTable, shape_ids: torch.Tensor, colour_ids: torch.Tensor,
                       generator: torch.Generator, colour_probability: float = 0.5) -> torch.Tensor:
    """One true caption per crop: a shape caption for a crop that frames an object, else a caption of nothing.
    shape_ids, colour_ids: (B,) long -> (B,) long caption ids."""
    n = shape_ids.shape[0]
    with_colour = torch.rand(n, generator=generator) < colour_probability
    shape_template = torch.randint(len(SHAPE_TEMPLATES), (n,), generator=generator)
    colour_template = torch.randint(len(COLOUR_SHAPE_TEMPLATES), (n,), generator=generator)
    ids = []
    for s, c, w, st, ct in zip(shape_ids.tolist(), colour_ids.tolist(), with_colour.tolist(),
                               shape_template.tolist(), colour_template.tolist()):
        if s == NO_SHAPE:
            # A crop of nothing reuses its shape-template draw (6 templates, 2 x 3: still uniform over 3), so the
            # generator's stream, and every object crop's caption, is the same with or without background crops.
            ids.append(table.lookup(NO_SHAPE, NO_COLOUR, st % len(BACKGROUND_TEMPLATES)))
        else:
            ids.append(table.lookup(s, c if w else NO_COLOUR, ct if w else st))
    return torch.tensor(ids)


def true_caption_mask(table: CaptionTable, caption_ids: torch.Tensor, shape_ids: torch.Tensor,
                      colour_ids: torch.Tensor) -> torch.Tensor:
    """(B_images, B_captions) bool: caption j truly describes image i (same shape, NO_SHAPE for a crop of nothing;
    same colour if a shape caption names one; a crop of nothing's colour is that of a part it shows, which no
    caption of nothing names).

    This is the multi-positive target: a "star" caption drawn for one crop is just as true for every star crop, and
    "a background." for every crop of nothing.
    """
    cap_shape, cap_colour = table.shape_ids[caption_ids], table.colour_ids[caption_ids]
    same_shape = shape_ids[:, None] == cap_shape[None, :]
    colour_ok = (cap_colour[None, :] == NO_COLOUR) | (colour_ids[:, None] == cap_colour[None, :])
    return same_shape & colour_ok


def clipcap_captions() -> tuple[str, ...]:
    """Every ClipCap training caption, in the order `clipcap_caption_ids` indexes: object captions [template,
    colour, shape], background captions [template, texture], part captions [template, colour, texture]."""
    objects = [t.format(colour=c, shape=s) for t in CLIPCAP_TEMPLATES for c in COLOUR_NAMES for s in SHAPE_NAMES]
    backgrounds = [t.format(texture=x) for t in CLIPCAP_BACKGROUND_TEMPLATES for x in TEXTURES]
    parts = [t.format(colour=c, texture=x) for t in CLIPCAP_PART_TEMPLATES for c in COLOUR_NAMES for x in TEXTURES]
    return tuple(objects + backgrounds + parts)


def clipcap_caption_ids(shape_ids: torch.Tensor, colour_ids: torch.Tensor, background_ids: torch.Tensor,
                        generator: torch.Generator) -> torch.Tensor:
    """One caption of `clipcap_captions()` per crop, its template drawn uniformly among those of the crop's kind.
    shape_ids, colour_ids, background_ids: (B,) long (CropBank) -> (B,) long caption ids."""
    shapes, colours, textures = len(SHAPE_NAMES), len(COLOUR_NAMES), len(TEXTURES)
    draw = torch.rand(shape_ids.shape[0], generator=generator)
    object_ids = ((draw * len(CLIPCAP_TEMPLATES)).long() * colours + colour_ids) * shapes + shape_ids
    texture_offset = len(CLIPCAP_TEMPLATES) * colours * shapes
    texture_ids = texture_offset + (draw * len(CLIPCAP_BACKGROUND_TEMPLATES)).long() * textures + background_ids
    part_offset = texture_offset + len(CLIPCAP_BACKGROUND_TEMPLATES) * textures
    part_ids = part_offset + ((draw * len(CLIPCAP_PART_TEMPLATES)).long() * colours + colour_ids) * textures \
        + background_ids
    nothing = shape_ids == NO_SHAPE
    return torch.where(~nothing, object_ids, torch.where(colour_ids == NO_COLOUR, texture_ids, part_ids))


def tokenizer_corpus() -> list[str]:
    """Every ClipCap caption there is, plus the bare class names, for training the caption tokenizer."""
    return list(clipcap_captions()) + list(SHAPE_NAMES) + list(COLOUR_NAMES)
