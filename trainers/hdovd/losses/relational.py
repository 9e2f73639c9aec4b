"""Relational distillation: match the similarity structure among regions to CLIP's (HD-OVD eq. 3, after DK-DETR)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# The released code distils relations with mmdet's KnowledgeDistillationKLDivLoss at its default temperature T = 10:
# both logit matrices are divided by T, and the KL (teacher first, summed over a row, averaged over rows) is
# multiplied by T² so its gradient keeps the scale of the untempered loss (Hinton et al. 2015).
RELEASED_TEMPERATURE = 10.0


def _drop_diagonal(matrix: Tensor) -> Tensor:
    """(n, n) → (n, n−1): each row without its own entry."""
    n = matrix.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=matrix.device)
    return matrix[off_diagonal].view(n, n - 1)


def relational_kd_loss(
    queries: Tensor,
    teachers: Tensor,
    tau: float,
    variant: str = "eq3",
    exclude_diagonal: bool = False,
    temperature: float = RELEASED_TEMPERATURE,
) -> Tensor:
    """(1/n)·Σ_i KL between row i of softmax(τ·QQᵀ) and of softmax(τ·EEᵀ).

    queries: (n, D) float, L2-normalised (student). teachers: (n, D) float, L2-normalised (CLIP), no gradient.
    variant: `eq3` = KL(P_q || P_e) of softmax(τ·cos), as eq. 3 prints it; `released` = the released code's mmdet
    KD loss, T²·KL(P_e || P_q) of softmax(τ·cos / T) with T = `temperature`. Eq. 3 also prints a leading minus,
    which would reward divergence; KL ≥ 0 is what is minimised, so the sign is dropped here.
    Returns a scalar; 0 (with a graph) when n < 2, where no relation exists.
    """
    if variant not in ("eq3", "released"):
        raise ValueError(f"hdovd.loss.rkd_variant must be eq3 or released, got {variant!r}")
    n = queries.shape[0]
    if n < 2 or (exclude_diagonal and n < 3):
        return queries.sum() * 0.0
    scale = temperature if variant == "released" else 1.0
    student_logits = queries @ queries.t() * (tau / scale)
    teacher_logits = (teachers @ teachers.t() * (tau / scale)).detach()
    if exclude_diagonal:
        student_logits, teacher_logits = _drop_diagonal(student_logits), _drop_diagonal(teacher_logits)
    log_p_student = F.log_softmax(student_logits, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits, dim=1)
    if variant == "eq3":
        return (log_p_student.exp() * (log_p_student - log_p_teacher)).sum(dim=1).mean()
    return scale**2 * (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1).mean()
