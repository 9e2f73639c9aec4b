"""The Open-Det criterion's released behaviour against hand-computed values: loss_bce (focal + Joint Loss / the
number of boxes) and eq. 4's form, MAL over each image's own texts with the IoU mask, pseudo objects (matched,
not regressed, weighted)."""
import math

import pytest
import torch

from trainers.modeling.box_criterion import BoxCriterion, LayerMatch
from trainers.opendet.batch_losses import with_pseudo_objects
from trainers.opendet.config import OpenDetLossConfig
from trainers.opendet.criterion import ObjectTargets, OpenDetCriterion
from trainers.opendet.losses import joint_targets
from tests.float32 import approx32
from tests.focal_by_hand import focal, sigmoid


def objects(counts=(1, 1), regress=None):
    """Two images with one object each: boxes in cxcywh, texts orthogonal ("circle", "star")."""
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]])[:sum(counts)]
    texts = torch.eye(3)[:sum(counts)]
    return ObjectTargets(boxes, list(counts), regress, text_embeddings=texts, names=["circle", "star", "x"][
        :sum(counts)], weights=torch.ones(sum(counts)))


# Three valid queries: 0 and 1 in image 0, 2 in image 1; query 0 ↔ object 0, query 2 ↔ object 1.
QUERY_BOXES = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.8, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2]])
LOGITS = torch.tensor([0.5, -1.0, 2.0])
ALIGNMENT = torch.tensor([[1.0, -1.0], [0.0, 0.5], [-2.0, 3.0]])
MATCH = LayerMatch(torch.tensor([0, 2]), torch.tensor([0, 1]))


def joint_by_hand(normalizer):
    p = [sigmoid(x) for x in LOGITS.tolist()]
    t = joint_targets(torch.tensor([p[0], p[2]]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0])).tolist()
    rows = [-(t[0] - p[0]) ** 2 * math.log(p[0]) - (1 - t[0]) * p[0] ** 2 * math.log(1 - p[0]),
            -p[1] ** 2 * math.log(1 - p[1]),
            -(t[1] - p[2]) ** 2 * math.log(p[2]) - (1 - t[1]) * p[2] ** 2 * math.log(1 - p[2])]
    return sum(rows) / normalizer


def test_released_loss_bce_is_focal_plus_joint_over_the_number_of_boxes():
    criterion = OpenDetCriterion(OpenDetLossConfig())
    loss = criterion.binary_loss(LOGITS, QUERY_BOXES, ALIGNMENT, MATCH, objects(), num_boxes=2)
    focal_sum = focal(0.5, True) + focal(-1.0, False) + focal(2.0, True)
    assert loss.item() == approx32(focal_sum / 2 + joint_by_hand(2))
    # In a one-to-many layer with 2 copies the released code divides by 2 objects × 2.
    many = criterion.binary_loss(LOGITS, QUERY_BOXES, ALIGNMENT, MATCH, objects(), num_boxes=4)
    assert many.item() == approx32(focal_sum / 4 + joint_by_hand(4))


def test_eq4_form_is_the_joint_loss_over_the_queries():
    criterion = OpenDetCriterion(OpenDetLossConfig(binary_loss="eq4"))
    loss = criterion.binary_loss(LOGITS, QUERY_BOXES, ALIGNMENT, MATCH, objects(), num_boxes=2)
    assert loss.item() == approx32(joint_by_hand(3))


def test_mal_reads_each_images_own_texts_and_divides_by_positive_entries():
    criterion = OpenDetCriterion(OpenDetLossConfig(alignment_min_iou=0.0))
    query_images = torch.tensor([0, 0, 1])
    loss = criterion.alignment_loss(ALIGNMENT, QUERY_BOXES, query_images, MATCH, objects(), copies=1)
    # Kept entries: queries 0, 1 × object 0 (image 0), query 2 × object 1 (image 1); positives (0,0) and (2,1).
    expected = (focal(1.0, True) + focal(0.0, False) + focal(3.0, True)) / 2
    assert loss.item() == approx32(expected)
    batch = OpenDetCriterion(OpenDetLossConfig(alignment_texts="batch", alignment_normalizer="matched_queries"))
    every = sum(focal(ALIGNMENT[i, j].item(), (i, j) in {(0, 0), (2, 1)}) for i in range(3) for j in range(2)) / 2
    assert batch.alignment_loss(ALIGNMENT, QUERY_BOXES, query_images, MATCH, objects(), 1).item() == approx32(
        every)


def test_mal_iou_mask_drops_far_pairs_of_images_that_fill_the_padded_width():
    criterion = OpenDetCriterion(OpenDetLossConfig())  # released: IoU < 0.05 masked
    query_images = torch.tensor([0, 0, 1])
    # Both images hold one object, so both fill the padded width: query 1's box misses object 0 (IoU 0) → dropped.
    loss = criterion.alignment_loss(ALIGNMENT, QUERY_BOXES, query_images, MATCH, objects(), copies=1)
    assert loss.item() == approx32((focal(1.0, True) + focal(3.0, True)) / 2)
    # In a one-to-many layer the released code applies no IoU mask.
    many = criterion.alignment_loss(ALIGNMENT, QUERY_BOXES, query_images, MATCH, objects(), copies=2)
    assert many.item() == approx32((focal(1.0, True) + focal(0.0, False) + focal(3.0, True)) / 2)


def test_pseudo_objects_follow_the_ground_truth_with_their_score_and_without_regression():
    named = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "text_embeddings": torch.eye(4)[:1],
              "names": ["circle"]}]
    pseudo = [{"boxes": torch.tensor([[20.0, 20.0, 40.0, 40.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 5.0, 5.0]]),
               "label_ids": torch.tensor([1, 0, 1]), "scores": torch.tensor([0.9, 0.3, 1.2]),
               "proposal_scores": torch.tensor([0.8, 0.1, 0.5]), "text_embeddings": torch.eye(4)[1:]}]
    merged = with_pseudo_objects(named, pseudo, ["star", "heart"], min_proposal_score=0.5)[0]
    assert merged["names"] == ["circle", "heart", "heart"]  # the 0.1 proposal is left out
    assert merged["weights"].tolist() == approx32([1.0, 0.9, 1.2])
    assert merged["regress"].tolist() == [True, False, False]
    assert torch.equal(merged["text_embeddings"], torch.eye(4)[[0, 1, 3]])
    everything = with_pseudo_objects(named, pseudo, ["star", "heart"])[0]
    assert everything["names"] == ["circle", "heart", "star", "heart"]


def test_box_losses_skip_objects_that_are_not_regressed():
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]])
    targets = objects((1, 1), regress=torch.tensor([True, False]))
    match = LayerMatch(torch.tensor([0, 1]), torch.tensor([0, 1]))
    terms = BoxCriterion().box_losses(boxes, match, targets)
    # Only pair (0, 0) counts: identical boxes → L1 0, GIoU loss 0; pair (1, 1) (L1 0.4) is a pseudo box.
    assert terms["l1"].item() == pytest.approx(0.0, abs=1e-6) and terms["giou"].item() == pytest.approx(0.0, abs=1e-6)
    regressed = BoxCriterion().box_losses(boxes, match, objects((1, 1)))
    assert regressed["l1"].item() == approx32(0.4 / 2)
