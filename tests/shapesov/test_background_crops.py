"""Boxes on nothing and their captions: what each box frames, captions of nothing that the real noun parser finds
no label in, and object crops that stay the same whether or not boxes on nothing are drawn beside them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.nouns import NounExtractor
from pipelines.pseudo_labels_config import NounsSection
from shapesov.classes import COLOUR_NAMES, SHAPE_NAMES
from shapesov.config import SceneConfig
from shapesov.render import BACKGROUND_KINDS
from shapesov.scenes import sample_scene
from shapesov.streams import stream_rng
from shapesov.teachers.background_boxes import sample_background_boxes, what_boxes_frame
from shapesov.teachers.captions import (BACKGROUND_TEMPLATES, TEXTURES, clip_caption_table, clipcap_caption_ids,
                                        clipcap_captions, sample_caption_ids, true_caption_mask)
from shapesov.teachers.config import BackgroundCropConfig
from shapesov.teachers.crops import BOX_KINDS, NO_COLOUR, NO_SHAPE, render_crop_bank

OBJECTS = np.array([[10.0, 10.0, 30.0, 30.0], [60.0, 40.0, 100.0, 80.0]])


@pytest.fixture(scope="module")
def extractor():
    return NounExtractor.from_config(NounsSection())  # what the pseudo-labels stage parses captions with


def test_a_box_frames_an_object_at_iou_half_and_else_shows_part_of_the_most_covering_one():
    boxes = np.array([[10.0, 10.0, 30.0, 30.0],  # the first object itself
                      [10.0, 10.0, 30.0, 40.0],  # IoU 400 / 600 = 0.67 with it
                      [10.0, 10.0, 30.0, 50.0],  # IoU 400 / 800 = 0.5: frames it, the rule is >=
                      [10.0, 10.0, 30.0, 52.0],  # IoU 400 / 840 < 0.5; the object covers 48% of the box: a part
                      [60.0, 40.0, 70.0, 50.0],  # inside the second object, a sixteenth of it: a part
                      [0.0, 0.0, 100.0, 100.0],  # covers both; the second covers 16% (< 20%) of it: nothing
                      [110.0, 0.0, 120.0, 10.0]])  # on nothing
    framed, part = what_boxes_frame(boxes, OBJECTS)
    assert framed == [0, 0, 0, None, None, None, None]
    assert part == [None, None, None, 0, 1, None, None]


def test_background_boxes_of_each_kind_stay_in_the_image_and_parts_never_frame_their_shape():
    cfg = BackgroundCropConfig(anywhere_per_scene=3, part_per_object=4, loose_per_object=4)
    found = sample_background_boxes(np.random.default_rng(3), OBJECTS, 120, 90, cfg)
    kinds = [b.kind for b in found]
    assert kinds.count("anywhere") == 3 and kinds.count("part") == 8 and kinds.count("loose") <= 8
    for item in found:
        x0, y0, x1, y1 = item.box
        assert 0 <= x0 < x1 <= 120 and 0 <= y0 < y1 <= 90 and min(x1 - x0, y1 - y0) >= 4
        if item.kind == "part":
            assert item.framed is None and item.part is not None
    assert sample_background_boxes(np.random.default_rng(3), OBJECTS, 120, 90, cfg) == found  # seeded


def test_every_caption_of_nothing_yields_no_label_and_every_object_caption_its_shape(extractor):
    captions = clipcap_captions()
    found = extractor.candidates(list(captions))
    objects = len(captions) - len(TEXTURES) * (2 + len(COLOUR_NAMES))
    for caption, candidates in zip(captions[:objects], found[:objects]):
        assert any(shape in candidates for shape in SHAPE_NAMES if f" {shape}" in caption), (caption, candidates)
    assert all(not candidates for candidates in found[objects:]), list(zip(captions[objects:], found[objects:]))
    table = clip_caption_table()
    background = [text for text, shape in zip(table.texts, table.shape_ids.tolist()) if shape == NO_SHAPE]
    assert background == list(BACKGROUND_TEMPLATES)
    assert extractor.candidates(background) == [[] for _ in background]


def test_clipcap_captions_describe_what_each_crop_shows():
    captions = clipcap_captions()
    shapes = torch.tensor([SHAPE_NAMES.index("star"), NO_SHAPE, NO_SHAPE])
    colours = torch.tensor([COLOUR_NAMES.index("red"), NO_COLOUR, COLOUR_NAMES.index("blue")])
    backgrounds = torch.tensor([0, BACKGROUND_KINDS.index("stripes"), BACKGROUND_KINDS.index("dots")])
    seen = {i: set() for i in range(3)}
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        for i, caption_id in enumerate(clipcap_caption_ids(shapes, colours, backgrounds, generator).tolist()):
            seen[i].add(captions[caption_id])
    assert seen[0] == {"a red star on a textured background.", "a red star."}
    assert seen[1] == {"a patch of striped background.", "a striped background."}
    assert seen[2] == {"part of a blue shape on a dotted background."}


def test_clip_captions_of_nothing_are_positives_of_every_crop_of_nothing_and_of_no_object_crop():
    table = clip_caption_table()
    shapes = torch.tensor([SHAPE_NAMES.index("star"), NO_SHAPE, NO_SHAPE])
    colours = torch.tensor([COLOUR_NAMES.index("red"), NO_COLOUR, COLOUR_NAMES.index("red")])
    ids = sample_caption_ids(table, shapes, colours, torch.Generator().manual_seed(1))
    assert "star" in table.texts[ids[0]] and {table.texts[i] for i in ids[1:]} <= set(BACKGROUND_TEMPLATES)
    positives = true_caption_mask(table, ids, shapes, colours)
    assert positives.tolist() == [[True, False, False], [False, True, True], [False, True, True]]


def test_object_crops_are_the_same_with_or_without_boxes_on_nothing():
    plain = render_crop_bank(0, "teacher_clip", 6, 2, 32, 0.06, (0.5, 0.2, 0.3))
    both = render_crop_bank(0, "teacher_clip", 6, 2, 32, 0.06, (0.5, 0.2, 0.3), background=BackgroundCropConfig())
    objects = both.subset(both.kind_ids == BOX_KINDS.index("object"))
    assert torch.equal(objects.pixels, plain.pixels) and torch.equal(objects.shape_ids, plain.shape_ids)
    nothing = both.subset(~both.frames_object)
    assert len(nothing) > len(plain) // 2 and set(nothing.kind_ids.tolist()) == {1, 2, 3}
    scene = sample_scene(stream_rng(0, "teacher_clip", 0), SceneConfig())
    assert both.background_ids[0] == BACKGROUND_KINDS.index(scene.background)
