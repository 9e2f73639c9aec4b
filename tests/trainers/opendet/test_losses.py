"""Open-Det losses against values computed by hand on 2–3 rows, and the sign of their gradients."""
import math

import torch

from trainers.opendet.losses import (
    alignment_targets,
    joint_loss,
    joint_targets,
    masked_alignment_loss,
    vl_distillation_loss,
)
from tests.float32 import approx32

ALPHA, GAMMA = 0.25, 2.0


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def focal(logit, target):
    p = sigmoid(logit)
    if target:
        return ALPHA * (1 - p) ** GAMMA * -math.log(p)
    return (1 - ALPHA) * p**GAMMA * -math.log(1 - p)


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


def test_joint_loss_by_hand_and_gradient_sign():
    logits = torch.tensor([-1.0, 2.0, 1.0], requires_grad=True)
    matched = torch.tensor([True, True, False])
    targets = torch.tensor([0.8, 0.3, 0.0])
    p = [sigmoid(x) for x in (-1.0, 2.0, 1.0)]
    rows = [
        -(0.8 - p[0]) ** 2 * math.log(p[0]) - (1 - 0.8) * p[0] ** 2 * math.log(1 - p[0]),
        -(0.3 - p[1]) ** 2 * math.log(p[1]) - (1 - 0.3) * p[1] ** 2 * math.log(1 - p[1]),
        -p[2] ** 2 * math.log(1 - p[2]),  # unmatched: w⁻ = p², no positive term
    ]
    loss = joint_loss(logits, matched, targets, normalizer=3)
    assert loss.item() == approx32(sum(rows) / 3)
    loss.backward()
    # Weights are detached: d/dx = [−(t−p)²(1−p) + w⁻ p] / N.
    grads = [(-(0.8 - p[0]) ** 2 * (1 - p[0]) + 0.2 * p[0] ** 2 * p[0]) / 3,
             (-(0.3 - p[1]) ** 2 * (1 - p[1]) + 0.7 * p[1] ** 2 * p[1]) / 3,
             (p[2] ** 2 * p[2]) / 3]
    assert logits.grad.tolist() == approx32(grads)
    # Matched below its target → raised; matched far above its target and unmatched → lowered.
    assert logits.grad[0] < 0 and logits.grad[1] > 0 and logits.grad[2] > 0


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
