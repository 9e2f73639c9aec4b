"""Contrastive distillation between detector embeddings and CLIP embeddings (HD-OVD eq. 1–2 and eq. 8–10).

Row i of the student matrix and row i of the teacher matrix are a positive pair; every other teacher row, and any
queued teacher rows, are negatives. All inputs are L2-normalised, so a dot product is a cosine.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _empty_like_rows(reference: Tensor) -> Tensor:
    return reference.new_zeros((0, reference.shape[1]))


def sigmoid_contrastive_loss(queries: Tensor, teachers: Tensor, teacher_negatives: Tensor | None, tau: float) -> Tensor:
    """HD-OVD eq. 1–2: BCE on p_ij = sigmoid(cos(q_i, e_j)·τ), target 1 on the diagonal and 0 elsewhere.

    queries: (n, D) float, L2-normalised (student q_i).
    teachers: (n, D) float, L2-normalised (CLIP e_i, positives on the diagonal).
    teacher_negatives: (k, D) float, L2-normalised, or None (queued CLIP embeddings, negatives for every row).
    Returns a scalar: −(1/n)·Σ_i [log p_ii + Σ_{j≠i} log(1 − p_ij)], summed over negatives, averaged over rows
    exactly as eq. 1 prints it.
    """
    n = queries.shape[0]
    if n == 0:
        return queries.sum() * 0.0
    negatives = _empty_like_rows(teachers) if teacher_negatives is None else teacher_negatives
    columns = torch.cat([teachers, negatives.to(teachers.dtype)])
    logits = queries @ columns.t() * tau
    targets = torch.zeros_like(logits)
    targets[:, :n] = torch.eye(n, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / n


def bidirectional_info_nce(
    students: Tensor,
    teachers: Tensor,
    tau: float,
    teacher_negatives: Tensor | None = None,
    student_negatives: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE (HD-OVD eq. 8–10; the released code's instance CKD): ½(CE(x→e) + CE(e→x)).

    students: (m, D) float, L2-normalised (x_i). teachers: (m, D) float, L2-normalised (e_i).
    teacher_negatives: (k, D) extra columns for the x→e direction; student_negatives: (k', D) for e→x.
    Returns a scalar averaged over the m rows. Eq. 8 prints a plain sum over images; we average, as eq. 1 and 3
    do, so that the weight α3 does not change meaning with the batch size.
    """
    m = students.shape[0]
    if m == 0:
        return students.sum() * 0.0
    teacher_columns = teachers if teacher_negatives is None else torch.cat([teachers, teacher_negatives.to(teachers.dtype)])
    student_columns = students if student_negatives is None else torch.cat([students, student_negatives.to(students.dtype)])
    labels = torch.arange(m, device=students.device)
    student_to_teacher = F.cross_entropy(students @ teacher_columns.t() * tau, labels)
    teacher_to_student = F.cross_entropy(teachers @ student_columns.t() * tau, labels)
    return 0.5 * (student_to_teacher + teacher_to_student)


def _info_nce_instance(queries: Tensor, teachers: Tensor, teacher_negatives: Tensor | None,
                       query_negatives: Tensor | None, tau: float) -> Tensor:
    return bidirectional_info_nce(queries, teachers, tau, teacher_negatives, query_negatives)


def _sigmoid_instance(queries: Tensor, teachers: Tensor, teacher_negatives: Tensor | None,
                      query_negatives: Tensor | None, tau: float) -> Tensor:
    # Eq. 1 pads only CLIP embeddings; queued student queries have no role in it.
    return sigmoid_contrastive_loss(queries, teachers, teacher_negatives, tau)


# Instance CKD variants by config name (HdovdLossConfig.instance_contrastive_variant).
InstanceContrastiveLoss = Callable[[Tensor, Tensor, "Tensor | None", "Tensor | None", float], Tensor]
INSTANCE_CONTRASTIVE_LOSSES: dict[str, InstanceContrastiveLoss] = {
    "sigmoid_bce": _sigmoid_instance,
    "info_nce": _info_nce_instance,
}
