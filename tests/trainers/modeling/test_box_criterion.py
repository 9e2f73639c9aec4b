"""The shared box criterion: matching with padding and copies, L1 / GIoU and the objectness focal loss by hand."""

import torch

from trainers.modeling.box_criterion import BoxCriterion, BoxTargets, LayerMatch, binary_focal_loss, normalised_cxcywh
from tests.float32 import approx32
from tests.focal_by_hand import focal


# One image, one object in the centre; query 1 sits on it, query 0 elsewhere, query 2 is padding.
OBJECTS = BoxTargets(torch.tensor([[0.5, 0.5, 0.2, 0.2]]), [1])
BOXES = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]]])
PADDING = torch.tensor([[False, False, True]])


def test_pixel_boxes_become_normalised_cxcywh():
    targets = BoxTargets.from_pixel_boxes([torch.tensor([[0.0, 0.0, 50.0, 20.0]]), torch.zeros(0, 4)],
                                          [(40, 100), (10, 10)])
    assert targets.counts == [1, 0]
    torch.testing.assert_close(targets.boxes, torch.tensor([[0.25, 0.25, 0.5, 0.5]]), rtol=1e-5, atol=1e-6)
    assert normalised_cxcywh(torch.tensor([[-10.0, 0.0, 10.0, 10.0]]), (10, 10))[0, 0].item() == 0.0  # clamped


def test_padding_is_never_matched_and_copies_match_more_queries():
    criterion = BoxCriterion()
    match = criterion.match(BOXES, PADDING, OBJECTS, copies=1)
    assert match.queries.tolist() == [1] and match.objects.tolist() == [0]
    match = criterion.match(BOXES, PADDING, OBJECTS, copies=4)
    assert sorted(match.queries.tolist()) == [0, 1]  # two valid queries: the padded one stays out


def test_alignment_scores_decide_between_equal_boxes():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]]])
    padding = torch.zeros(1, 2, dtype=torch.bool)
    match = BoxCriterion().match(boxes, padding, OBJECTS, copies=1, alignment=[torch.tensor([[-3.0], [3.0]])])
    assert match.queries.tolist() == [1]


def test_box_and_objectness_losses_by_hand():
    criterion = BoxCriterion()
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2]])
    match = LayerMatch(torch.tensor([1]), torch.tensor([0]))
    terms = criterion.box_losses(boxes, match, OBJECTS)
    assert terms["l1"].item() == approx32(0.1)
    # Boxes [0.5, 0.4, 0.7, 0.6] and [0.4, 0.4, 0.6, 0.6]: intersection 0.02, union 0.06, hull = union → GIoU 1/3.
    assert terms["giou"].item() == approx32(1 - 1 / 3)
    logits = torch.tensor([0.5, -0.5])
    assert criterion.objectness_loss(logits, match).item() == approx32(focal(-0.5, True) + focal(0.5, False))
    assert binary_focal_loss(logits, torch.tensor([True, False]), normalizer=1).item() == approx32(
        focal(0.5, True) + focal(-0.5, False))


def test_box_losses_divide_by_a_given_normaliser():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2]])
    terms = BoxCriterion().box_losses(boxes, LayerMatch(torch.tensor([1]), torch.tensor([0])), OBJECTS, normalizer=4)
    assert terms["l1"].item() == approx32(0.1 / 4)
