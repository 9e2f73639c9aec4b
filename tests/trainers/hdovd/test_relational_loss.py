"""Instance RKD (eq. 3) against hand-computed KL values, both directions, with and without the diagonal."""
import math

import torch
import torch.nn.functional as F

from trainers.hdovd.losses.relational import relational_kd_loss
from tests.float32 import approx32

A = math.e / (math.e + 1)  # softmax([1, 0])[0]


def test_identical_structures_give_zero():
    q = F.normalize(torch.randn(4, 8), dim=-1)
    assert relational_kd_loss(q, q, tau=5.0).item() == approx32(0.0)


def test_student_teacher_direction_by_hand():
    queries = torch.eye(2)  # QQᵀ = I → rows softmax([1, 0]), softmax([0, 1])
    teachers = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # EEᵀ = all ones → uniform rows
    expected = A * math.log(2 * A) + (1 - A) * math.log(2 * (1 - A))  # KL(P_q || P_e), same for both rows
    loss = relational_kd_loss(queries, teachers, tau=1.0, direction="student_teacher")
    assert loss.item() == approx32(expected)


def test_teacher_student_direction_by_hand():
    queries = torch.eye(2)
    teachers = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    expected = 0.5 * math.log(0.5 / A) + 0.5 * math.log(0.5 / (1 - A))  # KL(P_e || P_q)
    loss = relational_kd_loss(queries, teachers, tau=1.0, direction="teacher_student")
    assert loss.item() == approx32(expected)


def test_excluding_the_diagonal_by_hand():
    queries = torch.eye(3)  # off-diagonal similarities all 0 → uniform over the two others
    teachers = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # rows without diagonal: [1,0], [1,0], [0,0]
    per_row = 0.5 * math.log(0.5 / A) + 0.5 * math.log(0.5 / (1 - A))  # KL(uniform || [A, 1 − A])
    loss = relational_kd_loss(queries, teachers, tau=1.0, exclude_diagonal=True)
    assert loss.item() == approx32(2 * per_row / 3)


def test_gradient_step_reduces_the_loss_and_teacher_gets_none():
    torch.manual_seed(0)
    queries = F.normalize(torch.randn(3, 4), dim=-1).requires_grad_()
    teachers = F.normalize(torch.randn(3, 4), dim=-1).requires_grad_()
    loss = relational_kd_loss(queries, teachers, tau=5.0)
    loss.backward()
    assert teachers.grad is None
    with torch.no_grad():
        stepped = F.normalize(queries - 0.01 * queries.grad, dim=-1)
    assert relational_kd_loss(stepped, teachers.detach(), tau=5.0) < loss


def test_single_region_has_no_relation():
    q = torch.tensor([[1.0, 0.0]], requires_grad=True)
    assert relational_kd_loss(q, q.detach(), tau=5.0).item() == 0.0
