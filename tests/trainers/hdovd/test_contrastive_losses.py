"""Instance CKD (eq. 1–2), bidirectional InfoNCE (eq. 8–10 / released CKD) against hand-computed values."""
import math

import torch

from trainers.hdovd.losses.contrastive import bidirectional_info_nce, sigmoid_contrastive_loss
from tests.float32 import approx32

EYE2 = torch.eye(2)


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def test_sigmoid_ckd_on_orthonormal_pairs():
    # cos = 1 on the diagonal, 0 off it: p_ii = σ(20), p_ij = σ(0) = 1/2.
    loss = sigmoid_contrastive_loss(EYE2, EYE2, None, tau=20.0)
    expected = -(log_sigmoid(20) + math.log(0.5))  # −(1/2)·2·(log σ(20) + log(1 − 1/2))
    assert loss.item() == approx32(expected)


def test_sigmoid_ckd_pads_negatives_from_the_queue():
    queued = torch.tensor([[-1.0, 0.0]])  # cos −1 with q_1, 0 with q_2
    loss = sigmoid_contrastive_loss(EYE2, EYE2, queued, tau=20.0)
    row1 = log_sigmoid(20) + math.log(0.5) + log_sigmoid(20)  # log(1 − σ(−20)) = log σ(20)
    row2 = log_sigmoid(20) + math.log(0.5) + math.log(0.5)
    assert loss.item() == approx32(-(row1 + row2) / 2)


def test_sigmoid_ckd_gradient_pulls_towards_the_positive_and_away_from_negatives():
    queries = torch.tensor([[0.6, 0.8], [0.8, 0.6]], requires_grad=True)
    sigmoid_contrastive_loss(queries, EYE2, None, tau=20.0).backward()
    grad = queries.grad[0]
    assert torch.dot(grad, EYE2[0]) < 0  # gradient descent increases cos(q_1, e_1)
    assert torch.dot(grad, EYE2[1]) > 0  # and decreases cos(q_1, e_2)


def test_info_nce_by_hand():
    students = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # student→teacher rows: [1, 0] target 0 and [1, 0] target 1; teacher→student rows: [1, 1] and [0, 0].
    forward = (math.log1p(math.exp(-1)) + math.log1p(math.e)) / 2
    backward = math.log(2)
    loss = bidirectional_info_nce(students, EYE2, tau=1.0)
    assert loss.item() == approx32(0.5 * (forward + backward))


def test_info_nce_with_queued_teacher_negatives():
    queued = torch.tensor([[1.0, 0.0]])
    loss = bidirectional_info_nce(EYE2, EYE2, tau=1.0, teacher_negatives=queued)
    forward = (-math.log(math.e / (2 * math.e + 1)) - math.log(math.e / (math.e + 2))) / 2
    backward = math.log1p(math.exp(-1))
    assert loss.item() == approx32(0.5 * (forward + backward))


def test_info_nce_gradient_aligns_pairs():
    students = torch.tensor([[0.6, 0.8], [0.8, 0.6]], requires_grad=True)
    bidirectional_info_nce(students, EYE2, tau=20.0).backward()
    assert torch.dot(students.grad[0], EYE2[0]) < 0
    assert torch.dot(students.grad[1], EYE2[1]) < 0


def test_empty_inputs_give_zero_with_a_graph():
    empty = torch.zeros(0, 2, requires_grad=True)
    assert sigmoid_contrastive_loss(empty, torch.zeros(0, 2), None, 20.0).item() == 0.0
    assert bidirectional_info_nce(empty, torch.zeros(0, 2), 20.0).requires_grad
