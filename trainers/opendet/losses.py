"""Open-Det's training losses on matched query–text pairs: MAL (eq. 3), Joint Loss (eq. 4), VLD-M (eq. 7).

Notation: Nq queries of a batch, Nt text embeddings (one per object of the batch, its name embedded by the
vision-language model), and a matching that pairs some queries with some objects (query i ↔ object j).
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
                      threshold: float, masked: bool = True, same_image: Tensor | None = None) -> Tensor:
    """(Nq, Nt) float in {0, 1}: one-hot(query → matched object) · M, binarised (eq. 3's A ⊙-calibrated labels).

    matched_queries, matched_texts: (K,) int64, the matched pairs. text_embeddings: (Nt, D) float.
    masked=False gives the plain one-hot labels of GenerateU's alignment loss (Table 4 without MAL).
    same_image: (Nt, Nt) bool, objects of one image; given, M only joins objects of the same image (the released
    code's per-image text tensors)."""
    num_texts = text_embeddings.shape[0]
    one_hot = torch.zeros(num_queries, num_texts, device=text_embeddings.device)
    one_hot[matched_queries, matched_texts] = 1.0
    if not masked:
        return one_hot
    mask = same_name_mask(text_embeddings, threshold)
    if same_image is not None:
        mask = mask & same_image
    return (one_hot @ mask.float() > 0).float()


def masked_alignment_loss(alignment_scores: Tensor, targets: Tensor, num_positives: float, alpha: float = 0.25,
                          gamma: float = 2.0, entries: Tensor | None = None) -> Tensor:
    """Σ sigmoid_focal(s_ij, y_ij) / num_positives over the kept entries (Open-Det eq. 3 in its focal form; α 0.25,
    γ 2).

    alignment_scores: (Nq, Nt) float logits s(q_i, t_j) from BVLA-M. targets: (Nq, Nt) float in {0, 1} from
    `alignment_targets`. entries: (Nq, Nt) bool, the entries that count (None: all), e.g. `alignment_entries`.
    num_positives: the normaliser (clamped at 1 so a batch without objects gives 0, not NaN)."""
    per_entry = sigmoid_focal_loss(alignment_scores.float(), targets, alpha=alpha, gamma=gamma, reduction="none")
    if entries is not None:
        per_entry = per_entry * entries
    return per_entry.sum() / max(float(num_positives), 1.0)


def alignment_entries(query_images: Tensor, text_images: Tensor, ious: Tensor | None = None,
                      iou_mask_images: Tensor | None = None, min_iou: float = 0.0) -> Tensor:
    """(Nq, Nt) bool: the query–text pairs the alignment loss reads (released code's `ce_mask`).

    query_images: (Nq,) int64, the image of each query; text_images: (Nt,) int64, the image of each object: only
    pairs of one image count (each image is scored against its own texts). ious: (Nq, Nt) float, predicted box vs
    the object's box; iou_mask_images: (B,) bool, the images the IoU mask applies to: their pairs with IoU < min_iou
    are dropped as well."""
    entries = query_images[:, None] == text_images[None, :]
    if ious is not None and iou_mask_images is not None and min_iou > 0:
        applies = iou_mask_images[query_images][:, None]
        entries = entries & ~(applies & (ious < min_iou))
    return entries


def joint_targets(binary_probs: Tensor, ious: Tensor, alignment_scores: Tensor, alpha: float = 0.25,
                  min_iou: float = 0.01, min_target: float = 0.1) -> Tensor:
    """t = sqrt(p^α · IoU^(1−2α) · σ(s)^α), detached (Open-Det eq. 4; α = 0.25, IoU ≥ 0.01, t ≥ 0.1 as released).

    binary_probs, ious, alignment_scores: (K,) float for the matched queries; s is the alignment logit of the
    matched pair. The clamps keep the power of a near-zero IoU and the target of a poor match away from 0."""
    with torch.no_grad():
        p = binary_probs.float().clamp(min=1e-6)
        iou = ious.float().clamp(min=min_iou)
        product = p.pow(alpha) * iou.pow(1.0 - 2.0 * alpha) * torch.sigmoid(alignment_scores.float()).pow(alpha)
        return product.sqrt().clamp(min=min_target, max=1.0)


def joint_loss(binary_logits: Tensor, matched: Tensor, targets: Tensor, normalizer: float,
               detach_weights: bool = False) -> Tensor:
    """Σ_i [−w⁺_i log p_i − w⁻_i log(1 − p_i)] / normalizer (Open-Det eq. 4).

    binary_logits: (Nq,) float, the binary (objectness) head. matched: (Nq,) bool. targets: (Nq,) float t_i, read
    only where matched (t is always detached). w⁺ = (t − p)² for matched queries; w⁻ = p² for unmatched queries and
    (1 − t)·p² for matched ones, so a matched query whose target is high is barely pushed down (A.4, "negative
    weights"). The released code keeps the weights' gradient (detach_weights=False): p appears in them as well as in
    the logarithms."""
    logits = binary_logits.float()
    p = torch.sigmoid(logits)
    weight_p = p.detach() if detach_weights else p
    t = torch.where(matched, targets.float(), torch.zeros_like(p)).detach()
    positive_weight = torch.where(matched, (t - weight_p).pow(2), torch.zeros_like(p))
    negative_weight = torch.where(matched, (1.0 - t) * weight_p.pow(2), weight_p.pow(2))
    # log σ(x) and log(1 − σ(x)) = log σ(−x), stable for large |x|.
    per_query = -positive_weight * F.logsigmoid(logits) - negative_weight * F.logsigmoid(-logits)
    return per_query.sum() / max(float(normalizer), 1.0)


def vl_distillation_loss(prompts: Tensor, text_embeddings: Tensor, weights: Tensor | None = None,
                         images: Tensor | None = None) -> Tensor:
    """mean(w · (1 − cos(t_k, z_k))) over matched pairs (Open-Det eq. 7, VLD-M); 0 when nothing is matched.

    prompts: (K, Dt) float, the VL-prompts z of matched queries. text_embeddings: (K, Dt) float, their objects'
    name embeddings t (the teacher: no gradient flows into them). weights: (K,) float per pair (1 for a box label,
    the stored score of a pseudo name); None = all 1. images: (K,) int64, each pair's image: the mean is taken per
    image, then over the images that have pairs (the released DETRsegmVLUni.l2_loss and its per-image list's mean);
    None: one mean over the K pairs. With weight 1 everywhere either is eq. 7."""
    if prompts.shape[0] == 0:
        return prompts.sum() * 0.0  # keeps the graph so DDP sees every parameter used
    distance = 1.0 - F.cosine_similarity(prompts.float(), text_embeddings.detach().float(), dim=-1)
    if weights is not None:
        distance = distance * weights.detach().float()
    if images is None:
        return distance.mean()
    present, slot = torch.unique(images, return_inverse=True)
    sums = distance.new_zeros(len(present)).index_add(0, slot, distance)
    return (sums / torch.bincount(slot, minlength=len(present)).to(distance.dtype)).mean()
