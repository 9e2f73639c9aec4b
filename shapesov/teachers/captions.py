"""Captions the teachers learn from: CLIP's "alt texts" and ClipCap's descriptions of a crop.

CLIP captions name every shape, novel ones included, the way web alt-text named every object real CLIP saw.
Every caption has a fixed id in `clip_caption_table()` so tokenisation happens once, not per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from shapesov.classes import COLOUR_NAMES, SHAPE_NAMES

# "a photo of a {}." is the pipeline's default prompt; the others give the text tower a little variety.
SHAPE_TEMPLATES = ("a photo of a {shape}.", "a {shape}.", "a {shape} shape.", "a photo of the {shape}.",
                   "a drawing of a {shape}.", "a {shape} on a textured background.")
COLOUR_SHAPE_TEMPLATES = ("a photo of a {colour} {shape}.", "a {colour} {shape}.",
                          "a {colour} {shape} on a textured background.", "a picture of a {colour} {shape}.")
CLIPCAP_TEMPLATES = ("a {colour} {shape} on a textured background.", "a {colour} {shape}.")
NO_COLOUR = -1


@dataclass(frozen=True)
class CaptionTable:
    """All CLIP training captions. texts[i] names shape shape_ids[i] and colour colour_ids[i] (or NO_COLOUR)."""

    texts: tuple[str, ...]
    shape_ids: torch.Tensor  # (C,) long
    colour_ids: torch.Tensor  # (C,) long, NO_COLOUR where the caption names no colour

    def lookup(self, shape_id: int, colour_id: int, template_index: int) -> int:
        per_shape = len(SHAPE_TEMPLATES) + len(COLOUR_NAMES) * len(COLOUR_SHAPE_TEMPLATES)
        offset = template_index if colour_id == NO_COLOUR else (
            len(SHAPE_TEMPLATES) + colour_id * len(COLOUR_SHAPE_TEMPLATES) + template_index)
        return shape_id * per_shape + offset


def clip_caption_table() -> CaptionTable:
    texts, shapes, colours = [], [], []
    for shape_id, shape in enumerate(SHAPE_NAMES):
        for template in SHAPE_TEMPLATES:
            texts.append(template.format(shape=shape))
            shapes.append(shape_id)
            colours.append(NO_COLOUR)
        for colour_id, colour in enumerate(COLOUR_NAMES):
            for template in COLOUR_SHAPE_TEMPLATES:
                texts.append(template.format(colour=colour, shape=shape))
                shapes.append(shape_id)
                colours.append(colour_id)
    return CaptionTable(tuple(texts), torch.tensor(shapes), torch.tensor(colours))


def sample_caption_ids(table: CaptionTable, shape_ids: torch.Tensor, colour_ids: torch.Tensor,
                       generator: torch.Generator, colour_probability: float = 0.5) -> torch.Tensor:
    """One true caption per crop. shape_ids, colour_ids: (B,) long -> (B,) long caption ids."""
    n = shape_ids.shape[0]
    with_colour = torch.rand(n, generator=generator) < colour_probability
    shape_template = torch.randint(len(SHAPE_TEMPLATES), (n,), generator=generator)
    colour_template = torch.randint(len(COLOUR_SHAPE_TEMPLATES), (n,), generator=generator)
    ids = [table.lookup(int(s), int(c) if w else NO_COLOUR, int(ct if w else st))
           for s, c, w, st, ct in zip(shape_ids, colour_ids, with_colour, shape_template, colour_template)]
    return torch.tensor(ids)


def true_caption_mask(table: CaptionTable, caption_ids: torch.Tensor, shape_ids: torch.Tensor,
                      colour_ids: torch.Tensor) -> torch.Tensor:
    """(B_images, B_captions) bool: caption j truly describes image i (same shape; same colour if it names one).

    This is the multi-positive target: a "star" caption drawn for one crop is just as true for every star crop.
    """
    cap_shape, cap_colour = table.shape_ids[caption_ids], table.colour_ids[caption_ids]
    same_shape = shape_ids[:, None] == cap_shape[None, :]
    colour_ok = (cap_colour[None, :] == NO_COLOUR) | (colour_ids[:, None] == cap_colour[None, :])
    return same_shape & colour_ok


def tokenizer_corpus() -> list[str]:
    """Every ClipCap caption there is, plus the bare class names, for training the caption tokenizer."""
    corpus = [t.format(colour=c, shape=s) for t in CLIPCAP_TEMPLATES for c in COLOUR_NAMES for s in SHAPE_NAMES]
    return corpus + list(SHAPE_NAMES) + list(COLOUR_NAMES)
