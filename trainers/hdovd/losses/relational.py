"""Relational distillation: match the similarity structure among regions to CLIP's (HD-OVD eq. 3, after DK-DETR)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _drop_diagonal(matrix: Tensor) -> Tensor:
    """(n, n) → (n, n−1): each row without its own entry."""
    n = matrix.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return matrix[off_diagonal].view(n, n - 1)


def relational_kd_loss(
    queries: Tensor,
    teachers: Tensor,
    tau: float,
    direction: str = "student_teacher",
    exclude_diagonal: bool = False,
) -> Tensor:
    """(1/n)·Σ_i KL between row i of softmax(τ·QQᵀ) and of softmax(τ·EEᵀ).

    queries: (n, D) float, L2-normalised (student). teachers: (n, D) float, L2-normalised (CLIP), no gradient.
    direction: `student_teacher` = KL(P_q || P_e) as eq. 3 prints it; `teacher_student` = KL(P_e || P_q) as the
    released code computes it. Eq. 3 also prints a leading minus, which would reward divergence; KL ≥ 0 is what is
    minimised, so the sign is dropped here.
    Returns a scalar; 0 (with a graph) when n < 2, where no relation exists.
    """
    n = queries.shape[0]
    if n < 2 or (exclude_diagonal and n < 3):
        return queries.sum() * 0.0
    student_logits = queries @ queries.t() * tau
    teacher_logits = (teachers @ teachers.t() * tau).detach()
    if exclude_diagonal:
        student_logits, teacher_logits = _drop_diagonal(student_logits), _drop_diagonal(teacher_logits)
    log_p_student = F.log_softmax(student_logits, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits, dim=1)
    if direction == "student_teacher":
        per_row = (log_p_student.exp() * (log_p_student - log_p_teacher)).sum(dim=1)
    elif direction == "teacher_student":
        per_row = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    else:
        raise ValueError(f"loss.rkd_kl_direction must be student_teacher or teacher_student, got {direction!r}")
    return per_row.mean()
