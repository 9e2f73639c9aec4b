"""Open-Det's training losses on matched query–text pairs: MAL (eq. 3), Joint Loss (eq. 4), VLD-M (eq. 7).

Notation: Nq queries of a batch, Nt text embeddings (one per ground-truth object of the batch, its name embedded by
the vision-language model), and a matching that pairs some queries with some objects (query i ↔ object j).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss


def same_name_mask(text_embeddings: Tensor, threshold: float) -> Tensor:
    """(Nt, Nt) bool, [cos(t_a, t_b) ≥ threshold]: objects whose names embed alike (Open-Det Sec. 3.6, M).

    text_embeddings: (Nt, D) float, any norm. The same name gives identical embeddings (cos = 1), so every object
    with that name is a positive of a query matched to any one of them."""
    normalised = F.normalize(text_embeddings.detach().float(), dim=-1)
    return normalised @ normalised.T >= threshold


def alignment_targets(matched_queries: Tensor, matched_texts: Tensor, num_queries: int, text_embeddings: Tensor,
                      threshold: float, masked: bool = True) -> Tensor:
    """(Nq, Nt) float in {0, 1}: one-hot(query → matched object) · M, binarised (eq. 3's A ⊙-calibrated labels).

    matched_queries, matched_texts: (K,) int64, the matched pairs. text_embeddings: (Nt, D) float.
    masked=False gives the plain one-hot labels of GenerateU's alignment loss (Table 4 without MAL)."""
    num_texts = text_embeddings.shape[0]
    one_hot = torch.zeros(num_queries, num_texts, device=text_embeddings.device)
    one_hot[matched_queries, matched_texts] = 1.0
    if not masked:
        return one_hot
    mask = same_name_mask(text_embeddings, threshold).float()
    return (one_hot @ mask > 0).float()


def masked_alignment_loss(alignment_scores: Tensor, targets: Tensor, num_positives: float, alpha: float = 0.25,
                          gamma: float = 2.0) -> Tensor:
    """Σ sigmoid_focal(s_ij, y_ij) / num_positives (Open-Det eq. 3 with the focal form of DESIGN; α 0.25, γ 2).

    alignment_scores: (Nq, Nt) float logits s(q_i, t_j) from BVLA-M. targets: (Nq, Nt) float in {0, 1} from
    `alignment_targets`. num_positives: the normaliser (clamped at 1 so an image without objects gives 0, not NaN)."""
    per_entry = sigmoid_focal_loss(alignment_scores.float(), targets, alpha=alpha, gamma=gamma, reduction="none")
    return per_entry.sum() / max(float(num_positives), 1.0)


def joint_targets(binary_probs: Tensor, ious: Tensor, alignment_scores: Tensor, alpha: float = 0.25,
                  min_iou: float = 0.01, min_target: float = 0.1) -> Tensor:
    """t = sqrt(p^α · IoU^(1−2α) · σ(s)^α), detached (Open-Det eq. 4; α = 0.25, IoU ≥ 0.01, t ≥ 0.1 per DESIGN).

    binary_probs, ious, alignment_scores: (K,) float for the matched queries; s is the alignment logit of the
    matched pair. The clamps keep the power of a near-zero IoU and the target of a poor match away from 0."""
    with torch.no_grad():
        p = binary_probs.float().clamp(min=1e-6)
        iou = ious.float().clamp(min=min_iou)
        product = p.pow(alpha) * iou.pow(1.0 - 2.0 * alpha) * torch.sigmoid(alignment_scores.float()).pow(alpha)
        return product.sqrt().clamp(min=min_target, max=1.0)


def joint_loss(binary_logits: Tensor, matched: Tensor, targets: Tensor, normalizer: float) -> Tensor:
    """Σ_i [−(t_i − p_i)² log p_i − w⁻_i log(1 − p_i)] / normalizer (Open-Det eq. 4).

    binary_logits: (Nq,) float, the binary (objectness) head. matched: (Nq,) bool. targets: (Nq,) float t_i, read
    only where matched. w⁻ = p² for unmatched queries and (1 − t)·p² for matched ones, both detached like t, so
    a matched query whose target is high is barely pushed down (A.4, "negative weights")."""
    logits = binary_logits.float()
    p = torch.sigmoid(logits)
    t = torch.where(matched, targets.float(), torch.zeros_like(p)).detach()
    positive_weight = torch.where(matched, (t - p.detach()).pow(2), torch.zeros_like(p))
    negative_weight = torch.where(matched, (1.0 - t) * p.detach().pow(2), p.detach().pow(2))
    # log σ(x) and log(1 − σ(x)) = log σ(−x), stable for large |x|.
    per_query = -positive_weight * F.logsigmoid(logits) - negative_weight * F.logsigmoid(-logits)
    return per_query.sum() / max(float(normalizer), 1.0)


def vl_distillation_loss(prompts: Tensor, text_embeddings: Tensor) -> Tensor:
    """mean(1 − cos(t_k, z_k)) over matched pairs (Open-Det eq. 7, VLD-M); 0 when nothing is matched.

    prompts: (K, Dt) float, the VL-prompts z of matched queries. text_embeddings: (K, Dt) float, their objects'
    name embeddings t (the teacher: no gradient flows into them)."""
    if prompts.shape[0] == 0:
        return prompts.sum() * 0.0  # keeps the graph so DDP sees every parameter used
    return (1.0 - F.cosine_similarity(prompts.float(), text_embeddings.detach().float(), dim=-1)).mean()
