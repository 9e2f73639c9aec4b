"""Flips and transposition move every box with its pixels (the eight rotations and mirrors of an image)."""
from __future__ import annotations

import itertools

import torch

from trainers.data.transforms import horizontal_flip, transpose, vertical_flip


def test_every_combination_keeps_the_object_inside_its_moved_box():
    image = torch.zeros(3, 10, 20)
    image[:, 2:5, 1:4] = 1.0  # an object at x 1..4, y 2..5
    box = torch.tensor([[1.0, 2.0, 4.0, 5.0]])
    seen = set()
    for chosen in itertools.product((False, True), repeat=3):
        moved, boxes = image, {"boxes": box}
        for use, transform in zip(chosen, (horizontal_flip, vertical_flip, transpose)):
            if use:
                moved, boxes = transform(moved, boxes)
        x1, y1, x2, y2 = boxes["boxes"][0].int().tolist()
        assert moved[:, y1:y2, x1:x2].min() == 1.0 and moved.sum() == image.sum()
        seen.add((tuple(moved.shape), (x1, y1, x2, y2)))
    assert len(seen) == 8


def test_vertical_flip_and_transpose_by_hand():
    image = torch.zeros(3, 10, 20)
    _, flipped = vertical_flip(image, {"boxes": torch.tensor([[1.0, 2.0, 4.0, 5.0]])})
    assert flipped["boxes"].tolist() == [[1.0, 5.0, 4.0, 8.0]]
    transposed, swapped = transpose(image, {"boxes": torch.tensor([[1.0, 2.0, 4.0, 5.0]])})
    assert transposed.shape == (3, 20, 10) and swapped["boxes"].tolist() == [[2.0, 1.0, 5.0, 4.0]]
