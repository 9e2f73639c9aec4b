"""Transcriptions of the released Open-Det2 code (Med-Process/Open-Det2, projects/DDETRS/ddetrs/…) for the tests: the
arithmetic of each function rewritten over padded per-image tensors as the released code holds them (B images, Q
queries each, texts padded to the batch's widest image W), so the tests can compare our flattened, per-image code
with it. Each function names the file and function it follows; none of this is used by the trainer.

The released configuration that runs is MODEL_DET = "QFREE-DET" (ddetrs_vl_uni.py), so the criterion is
models/qfree_det/qfreeDet.py SetCriterion with the weight dict of _build_qfreedet and the DINO config
models/qfree_det/config/DINO_4scale_swin.py (cls_loss_coef 2, bbox_loss_coef 5, giou_loss_coef 2, set_cost_class 2,
set_cost_bbox 5, set_cost_giou 2, focal_alpha 0.25, dec_layers 6, two_stage_type 'standard', use_dn True).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import box_convert, box_iou, generalized_box_iou


def released_weight_dict(dec_layers: int = 6, cls: float = 2.0, bbox: float = 5.0, giou: float = 2.0,
                         interm: float = 1.0) -> dict[str, float]:
    """qfreeDet.py _build_qfreedet's weight_dict (aux_loss, use_dn, two_stage 'standard', use_xywh_loss): the loss
    names it weights; a name absent from it (every `loss_bce…`, the VLD-M and T5 terms) is summed with weight 1 by
    DDETRSVLUni.forward and detectron2's trainer."""
    weights = {"loss_ce": cls, "loss_bbox": bbox, "loss_bbox_12many": bbox, "loss_giou": giou,
               "loss_giou_12many": giou}
    clean_without_dn = dict(weights)
    weights.update({"loss_ce_dn": cls, "loss_bbox_dn": bbox, "loss_giou_dn": giou})
    clean = dict(weights)
    for layer in range(dec_layers - 1):
        weights.update({f"{name}_{layer}": value for name, value in clean.items()})
    weights.update({f"{name}_interm": value * interm for name, value in clean_without_dn.items()})
    xywh = {"loss_xy": 1.0, "loss_xy_dn": 1.0, "loss_hw": 1.0, "loss_hw_dn": 1.0}
    weights.update(xywh)
    weights.update({"loss_xy_interm": 1.0, "loss_hw_interm": 1.0})
    for layer in range(dec_layers - 1):
        weights.update({f"{name}_{layer}": value for name, value in xywh.items()})
    return weights


def released_weight(name: str, weights: dict[str, float]) -> float:
    """DDETRSVLUni.forward: `if k in weight_dict: loss_dict[k] *= weight_dict[k]`, the rest as they are."""
    return weights.get(name, 1.0)


def focal_matching_cost(prob: Tensor, alpha: float) -> Tensor:
    """matcher.py HungarianMatcher.forward's focal cost of a positive, from probabilities."""
    negative = (1 - alpha) * (prob**2.0) * (-(1 - prob + 1e-8).log())
    positive = alpha * ((1 - prob) ** 2.0) * (-(prob + 1e-8).log())
    return positive - negative


def released_match_one_image(align_logits: Tensor, boxes: Tensor, binary_logits: Tensor, gt_boxes: Tensor,
                             cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                             alpha: float = 0.25) -> tuple[Tensor, Tensor, Tensor]:
    """HungarianMatcher.forward (cost_opt False, the binary cost on) for a batch of ONE image: its Q queries'
    alignment logits (Q, n) over its own n texts, boxes (Q, 4) cxcywh, binary logits (Q,), gt (n, 4). Returns the
    cost (Q, n) and the assignment. (For B > 1 the released loop writes each image's class cost into the first
    columns of the batch's cost matrix, which only the first image reads as its own; ours gives every image its own.)"""
    cost_class_ = focal_matching_cost(align_logits.sigmoid(), alpha)
    cost_binary = focal_matching_cost(binary_logits.sigmoid()[:, None], alpha)
    cost = (cost_bbox * torch.cdist(boxes, gt_boxes, p=1) + cost_class * cost_class_
            - cost_giou * generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"), box_convert(gt_boxes, "cxcywh",
                                                                                                "xyxy"))
            + cost_binary.repeat(1, gt_boxes.shape[0]))
    rows, columns = linear_sum_assignment(cost.detach().numpy())
    return cost, torch.as_tensor(rows), torch.as_tensor(columns)


def released_one_to_many_cost_one_image(align_logits: Tensor, boxes: Tensor, binary_logits: Tensor, gt_boxes: Tensor
                                        ) -> Tensor:
    """HungarianMatcher_One_to_Many.forward (built in SetCriterion.__init__: cost_class 0.2, cost_bbox 5, cost_giou 2,
    focal_alpha 2.0, objects repeated 2×) for one image, the columns of the objects' first copy: the released loop
    fills the class cost of those columns only (`cost_class[srt:end, :num_label]`), the second copy's have none."""
    cost, _, _ = released_match_one_image(align_logits, boxes, binary_logits, gt_boxes, cost_class=0.2, alpha=2.0)
    return cost


def released_interm_losses(pred_logits: Tensor, pred_boxes: Tensor, binary_logits: Tensor, targets: list[dict],
                           texts: Tensor, indices: list[tuple[Tensor, Tensor]], num_boxes: float) -> dict[str, Tensor]:
    """SetCriterion.get_loss for the `interm_outputs` with losses ['labelsVL', 'labels', 'boxes'] and one-to-one
    indices: loss_labelsVL (MAL with ce_mask and the IoU < 0.05 mask of images that fill the padded width),
    loss_labels (loss_bce: sigmoid_focal_loss · Q + sigmoid_loss_align_iou_score) and loss_boxes.

    pred_logits: (B, Q, W) alignment logits, zero in padded text columns (VL_Align_Ours multiplies by text_mask);
    pred_boxes (B, Q, 4) cxcywh; binary_logits (B, Q, 1); targets: B × {boxes (n_b, 4) cxcywh}; texts: (B, W, D) the
    padded unit text embeddings (`clip_object_descriptions_features`); indices: B × (queries, objects)."""
    batch, queries, width = pred_logits.shape
    clip_sim = texts @ texts.transpose(-1, -2)
    clip_sim = torch.where(clip_sim < 0.999, torch.zeros_like(clip_sim), clip_sim)
    clip_sim = torch.where(clip_sim > 0.1, torch.ones_like(clip_sim), clip_sim)
    # loss_labelsVL
    ce_mask = torch.ones_like(pred_logits)
    onehot = torch.zeros_like(pred_logits)
    for b, (src, tgt) in enumerate(indices):
        ce_mask[b, :, len(targets[b]["boxes"]):] = 0
        onehot[b, src, tgt] = 1
    ce_mask = ce_mask.bool()
    onehot = onehot @ clip_sim
    for b in range(batch):
        if ce_mask[b].shape[1] == targets[b]["boxes"].shape[0]:
            iou = box_iou(box_convert(pred_boxes[b], "cxcywh", "xyxy"), box_convert(targets[b]["boxes"], "cxcywh",
                                                                                    "xyxy"))
            block = ce_mask[b, :, :width]
            block[iou < 0.05] = False
    logits, labels = torch.masked_select(pred_logits, ce_mask), torch.masked_select(onehot, ce_mask)
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    p_t = p * labels + (1 - p) * (1 - labels)
    focal = (0.25 * labels + 0.75 * (1 - labels)) * ce * (1 - p_t) ** 2
    loss_ce = focal.sum() / labels.sum()
    # loss_labels
    batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    matched = torch.zeros(batch, queries, 1)
    matched[batch_idx, src_idx, 0] = 1
    prob = binary_logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(binary_logits, matched, reduction="none")
    p_t = prob * matched + (1 - prob) * (1 - matched)
    focal = (0.25 * matched + 0.75 * (1 - matched)) * ce * (1 - p_t) ** 2
    loss_bce = focal.mean(1).sum() / num_boxes * queries
    src_boxes = pred_boxes[batch_idx, src_idx]
    target_boxes = torch.cat([t["boxes"][tgt] for t, (_, tgt) in zip(targets, indices)])
    align = pred_logits[batch_idx, src_idx, torch.cat([tgt for _, tgt in indices])]
    iou = torch.diag(box_iou(box_convert(src_boxes, "cxcywh", "xyxy"), box_convert(target_boxes, "cxcywh", "xyxy")))
    iou = torch.clamp(iou, 0.01)
    positive = (batch_idx, src_idx, torch.zeros_like(src_idx))
    t = torch.sqrt(prob[positive] ** 0.25 * iou ** 0.5 * align.sigmoid() ** 0.25)
    t = torch.clamp(t, 0.1).detach()
    pos_weights = torch.zeros_like(prob)
    pos_weights[positive] = (t - prob[positive]) ** 2
    neg_weights = prob**2
    neg_weights[positive] = (1 - t) * prob[positive] ** 2
    loss_bce = loss_bce + (-pos_weights * prob.log() - neg_weights * (1 - prob).log()).sum() / num_boxes
    # loss_boxes
    loss_bbox = F.l1_loss(src_boxes, target_boxes, reduction="none").sum() / num_boxes
    loss_giou = (1 - torch.diag(generalized_box_iou(box_convert(src_boxes, "cxcywh", "xyxy"),
                                                    box_convert(target_boxes, "cxcywh", "xyxy")))).sum() / num_boxes
    return {"loss_ce": loss_ce, "loss_bce": loss_bce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}


def released_vl_distillation(prompts: list[Tensor], texts: list[Tensor]) -> Tensor:
    """segmentation_condInst_new_encodfpn_3.py DETRsegmVLUni: l2_loss per image of one layer's matched queries,
    `(1 - cosine_similarity(text, fusion_mapping)).mean()`, then forward's `torch.stack(vl_l2_loss[key]).mean()`."""
    per_image = [(1 - torch.cosine_similarity(t, z, dim=1)).mean() for z, t in zip(prompts, texts)]
    return torch.stack(per_image, 0).mean()


def released_denoising_loss(t5_loss_of_image, noisy_per_image: list[Tensor], names_per_image: list[list[str]]
                            ) -> Tensor:
    """ddetrs_vl_uni.py DDETRSVLUni.forward, the `t5_clip_noise` term: T5's loss (its mean over tokens) of each
    image's noised text features, then `torch.stack(t5_loss_total).mean()`."""
    return torch.stack([t5_loss_of_image(noisy, names) for noisy, names in zip(noisy_per_image, names_per_image)]).mean()


def released_description(beams: list[str]) -> str:
    """DDETRSVLUni.inference: one box's beams joined with ', ', cut at 75 characters, then 'a ' + it."""
    joined = ", ".join(beams)
    if len(joined) > 75:
        joined = joined[:75]
    return "a " + joined


def released_num_boxes(counts_per_rank: list[int]) -> float:
    """SetCriterion.forward: num_boxes all-reduced (summed) over the ranks, divided by the world size, at least 1."""
    return max(sum(counts_per_rank) / len(counts_per_rank), 1.0)
