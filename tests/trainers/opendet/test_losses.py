"""Open-Det losses against values computed by hand on 2–3 rows, their gradients (the released Joint Loss keeps the
weights' gradient), MAL's per-image pairs and IoU mask, and weighted VLD-M."""
import math

import torch

from trainers.opendet.losses import (alignment_entries, alignment_targets, joint_loss, joint_targets,
                                     masked_alignment_loss, vl_distillation_loss)
from tests.float32 import approx32
from tests.focal_by_hand import focal, sigmoid


# Objects 0 and 2 share a name ("circle"), object 1 is a "square".
TEXTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
MATCHED_QUERIES, MATCHED_TEXTS = torch.tensor([0, 2]), torch.tensor([0, 1])


def test_masked_targets_make_every_same_name_object_positive():
    targets = alignment_targets(MATCHED_QUERIES, MATCHED_TEXTS, 3, TEXTS, threshold=0.99)
    assert targets.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    one_hot = alignment_targets(MATCHED_QUERIES, MATCHED_TEXTS, 3, TEXTS, threshold=0.99, masked=False)
    assert one_hot.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_masked_alignment_loss_by_hand_and_gradient_sign():
    scores = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0], [-0.5, 1.5, 0.0]], requires_grad=True)
    targets = alignment_targets(MATCHED_QUERIES, MATCHED_TEXTS, 3, TEXTS, threshold=0.99)
    expected = sum(focal(scores[i, j].item(), targets[i, j].item() == 1) for i in range(3) for j in range(3)) / 2
    loss = masked_alignment_loss(scores, targets, num_positives=2)
    assert loss.item() == approx32(expected)
    loss.backward()
    # Positives are pulled up (negative gradient), negatives pushed down (positive gradient).
    assert (scores.grad[targets == 1] < 0).all() and (scores.grad[targets == 0] > 0).all()


def test_without_mask_the_same_name_object_is_a_negative():
    scores = torch.zeros(3, 3, requires_grad=True)
    one_hot = alignment_targets(MATCHED_QUERIES, MATCHED_TEXTS, 3, TEXTS, threshold=0.99, masked=False)
    masked_alignment_loss(scores, one_hot, num_positives=2).backward()
    assert scores.grad[0, 2] > 0  # GenerateU's contradiction (Open-Det A.3): "circle" pushed away from "circle"


def test_joint_targets_by_hand_with_clamps():
    probs = torch.sigmoid(torch.tensor([-1.0, -3.0]))
    t = joint_targets(probs, torch.tensor([0.9, 0.0]), torch.tensor([5.0, -10.0]))
    t0 = math.sqrt(sigmoid(-1.0) ** 0.25 * 0.9**0.5 * sigmoid(5.0) ** 0.25)
    # Row 1: IoU 0 → 0.01, and sqrt(σ(−3)^¼ · 0.01^½ · σ(−10)^¼) ≈ 0.062 → clamped to 0.1.
    assert math.sqrt(sigmoid(-3.0) ** 0.25 * 0.1 * sigmoid(-10.0) ** 0.25) < 0.1
    assert t.tolist() == approx32([t0, 0.1])
    assert not t.requires_grad


LOGITS, MATCHED, JOINT_TARGETS = [-1.0, 2.0, 1.0], [True, True, False], [0.8, 0.3, 0.0]


def joint_rows():
    p = [sigmoid(x) for x in LOGITS]
    return p, [
        -(0.8 - p[0]) ** 2 * math.log(p[0]) - (1 - 0.8) * p[0] ** 2 * math.log(1 - p[0]),
        -(0.3 - p[1]) ** 2 * math.log(p[1]) - (1 - 0.3) * p[1] ** 2 * math.log(1 - p[1]),
        -p[2] ** 2 * math.log(1 - p[2]),  # unmatched: w⁻ = p², no positive term
    ]


def joint_gradient(detach_weights):
    logits = torch.tensor(LOGITS, requires_grad=True)
    loss = joint_loss(logits, torch.tensor(MATCHED), torch.tensor(JOINT_TARGETS), normalizer=3,
                      detach_weights=detach_weights)
    loss.backward()
    return loss, logits.grad


def test_joint_loss_by_hand():
    _, rows = joint_rows()
    for detach in (False, True):  # the weights' gradient changes nothing in the value
        loss, _ = joint_gradient(detach)
        assert loss.item() == approx32(sum(rows) / 3)


def test_released_joint_loss_keeps_the_gradient_of_its_weights():
    p, _ = joint_rows()
    _, grad = joint_gradient(detach_weights=False)
    # d/dp of −(t − p)² log p − (1 − t) p² log(1 − p), and of −p² log(1 − p) unmatched; dp/dx = p(1 − p).
    matched = [2 * (t - q) * math.log(q) - (t - q) ** 2 / q - (1 - t) * (2 * q * math.log(1 - q) - q**2 / (1 - q))
               for q, t in zip(p[:2], JOINT_TARGETS[:2])]
    unmatched = -2 * p[2] * math.log(1 - p[2]) + p[2] ** 2 / (1 - p[2])
    expected = [d * q * (1 - q) / 3 for d, q in zip(matched + [unmatched], p)]
    assert grad.tolist() == approx32(expected)


def test_detached_weights_give_a_different_gradient():
    p, _ = joint_rows()
    _, grad = joint_gradient(detach_weights=True)
    # Weights constant: d/dx = [−(t−p)²(1−p) + w⁻ p] / N.
    expected = [(-(0.8 - p[0]) ** 2 * (1 - p[0]) + 0.2 * p[0] ** 2 * p[0]) / 3,
                (-(0.3 - p[1]) ** 2 * (1 - p[1]) + 0.7 * p[1] ** 2 * p[1]) / 3,
                (p[2] ** 2 * p[2]) / 3]
    assert grad.tolist() == approx32(expected)
    # Matched below its target → raised; matched far above its target and unmatched → lowered.
    assert grad[0] < 0 and grad[1] > 0 and grad[2] > 0
    _, released = joint_gradient(detach_weights=False)
    assert released[2] / grad[2] == approx32(1 + 2 * (1 - p[2]) * -math.log(1 - p[2]) / p[2])
    assert (released.sign() == grad.sign()).all() and 1.5 < released[2] / grad[2] < 3.5  # about 2× apart


def test_alignment_entries_keep_each_images_own_texts_and_mask_far_boxes():
    query_images, text_images = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])
    entries = alignment_entries(query_images, text_images)
    assert entries.tolist() == [[True, False, False], [True, False, False], [False, True, True]]
    ious = torch.tensor([[0.5, 0.0, 0.0], [0.01, 0.0, 0.0], [0.0, 0.04, 0.9]])
    # Image 1 fills the padded width (2 objects), image 0 does not (1): only image 1's pairs below 0.05 go.
    masked = alignment_entries(query_images, text_images, ious, torch.tensor([False, True]), min_iou=0.05)
    assert masked.tolist() == [[True, False, False], [True, False, False], [False, False, True]]


def test_same_name_positives_stay_inside_their_image():
    # Objects 0 and 2 are both "circle", but object 2 belongs to another image.
    same_image = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    targets = alignment_targets(MATCHED_QUERIES, MATCHED_TEXTS, 3, TEXTS, threshold=0.999, same_image=same_image)
    assert targets.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_masked_alignment_loss_over_kept_entries_by_hand():
    scores = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0], [-0.5, 1.5, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    entries = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    kept = [(i, j) for i in range(3) for j in range(3) if entries[i, j]]
    positives = sum(targets[i, j].item() for i, j in kept)  # 1: the entries (0, 2) and (2, 1) left
    expected = sum(focal(scores[i, j].item(), targets[i, j].item() == 1) for i, j in kept) / positives
    loss = masked_alignment_loss(scores, targets, num_positives=positives, entries=entries)
    assert positives == 1 and loss.item() == approx32(expected)


def test_weighted_vl_distillation_by_hand():
    prompts = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    texts = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    loss = vl_distillation_loss(prompts, texts, torch.tensor([1.0, 0.25]))
    assert loss.item() == approx32((1.0 * 1.0 + 0.25 * (1 - 1 / math.sqrt(2))) / 2)


def test_vl_distillation_by_hand_and_gradient():
    prompts = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = vl_distillation_loss(prompts, texts)
    assert loss.item() == approx32((0 + (1 - 1 / math.sqrt(2))) / 2)
    loss.backward()
    # The second prompt turns toward (0, 1): its x grows costlier, its y cheaper; the first is already aligned.
    assert prompts.grad[1].tolist() == approx32([0.25 / math.sqrt(2), -0.25 / math.sqrt(2)])
    assert prompts.grad[0].abs().max() < 1e-6


def test_vl_distillation_without_pairs_is_zero_and_keeps_the_graph():
    prompts = torch.zeros(0, 4, requires_grad=True)
    loss = vl_distillation_loss(prompts, torch.zeros(0, 4))
    assert loss.item() == 0.0 and loss.requires_grad
