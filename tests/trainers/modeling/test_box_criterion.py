"""The shared box criterion: matching with padding and copies, L1 / GIoU and the objectness focal loss by hand,
and the per-layer sums HD-OVD's query detector pays."""
import math

import torch

from trainers.modeling.box_criterion import BoxCriterion, BoxTargets, LayerMatch, binary_focal_loss, normalised_cxcywh
from trainers.modeling.query_detector import DecoderLayerOutput, QueryDetectorOutput
from tests.float32 import approx32

ALPHA, GAMMA = 0.25, 2.0


def focal(logit: float, positive: bool) -> float:
    p = 1 / (1 + math.exp(-logit))
    if positive:
        return ALPHA * (1 - p) ** GAMMA * -math.log(p)
    return (1 - ALPHA) * p**GAMMA * -math.log(1 - p)


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


def test_detector_losses_sum_the_layers_and_the_encoder_then_weight_them():
    criterion = BoxCriterion(weight_l1=5.0, weight_giou=2.0, weight_binary=3.0, one_to_many_k=2)
    logits = torch.tensor([[1.0, -1.0, 0.0]])
    layers = [DecoderLayerOutput(BOXES, logits, torch.zeros(1, 3, 4), one_to_one=one_to_one)
              for one_to_one in (False, True)]
    output = QueryDetectorOutput(layers, PADDING, BOXES[:, :2], logits[:, :2], torch.zeros(1, 2, 4),
                                 torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), [(1, 2)], [(10, 10)], [(10, 10)])
    losses = criterion(output, OBJECTS)
    assert set(losses) == {"loss_l1", "loss_giou", "loss_binary"}
    expected = {"l1": 0.0, "giou": 0.0, "binary": 0.0}
    for boxes, layer_logits, padding, copies in [(BOXES, logits, PADDING, 2), (BOXES, logits, PADDING, 1),
                                                 (BOXES[:, :2], logits[:, :2], PADDING[:, :2], 2)]:
        terms, _ = criterion.layer_losses(boxes, layer_logits, padding, OBJECTS, copies)
        expected = {name: expected[name] + terms[name].item() for name in expected}
    assert losses["loss_l1"].item() == approx32(5.0 * expected["l1"])
    assert losses["loss_giou"].item() == approx32(2.0 * expected["giou"])
    assert losses["loss_binary"].item() == approx32(3.0 * expected["binary"])
    assert expected["l1"] > 0  # the one-to-many layers also match the far query
