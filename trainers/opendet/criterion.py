"""The Open-Det training losses of one batch (Appendix A.5, eq. 5–9), layer by layer of the decoder.

Each decoder layer matches its queries to the objects (one-to-many in the first layers, one-to-one in the last, Sec.
3.2) and pays L1 + GIoU on matched boxes, the Joint Loss on the binary head and the Masked Alignment Loss on BVLA-M's
scores. The last layer's matched queries also become VL-prompts: VLD-M distils them toward the objects' text
embeddings, and T5 learns to name them. The encoder's token proposals, from which queries are selected by threshold,
get box and binary losses too (two-stage DETRs train their proposal head the same way).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert, box_iou, generalized_box_iou

from trainers.opendet.loss_config import OpenDetLossConfig
from trainers.modeling.query_detector import QueryDetectorOutput
from trainers.opendet.losses import (
    alignment_targets,
    binary_focal_loss,
    joint_loss,
    joint_targets,
    masked_alignment_loss,
    vl_distillation_loss,
)
from trainers.modeling.matching import hungarian_match, matching_cost


@dataclass
class ObjectTargets:
    """The batch's objects, flattened. boxes: (Nt, 4) cxcywh in [0, 1]; text_embeddings: (Nt, Dt) float of each
    object's name; names: Nt strings; counts: objects per image (rows are image after image)."""

    boxes: Tensor
    text_embeddings: Tensor
    names: list[str]
    counts: list[int]

    @classmethod
    def from_targets(cls, targets: list[dict], image_sizes: list[tuple[int, int]]) -> "ObjectTargets":
        """targets: B × {boxes (G, 4) xyxy pixels, text_embeddings (G, Dt), names G strings}."""
        boxes = []
        for target, (height, width) in zip(targets, image_sizes):
            scale = target["boxes"].new_tensor([width, height, width, height])
            boxes.append(box_convert(target["boxes"] / scale, "xyxy", "cxcywh").clamp(0, 1))
        return cls(torch.cat(boxes), torch.cat([t["text_embeddings"] for t in targets]),
                   [name for t in targets for name in t["names"]], [len(t["boxes"]) for t in targets])


@dataclass
class LayerMatch:
    """Matched pairs of one layer: rows of the flattened valid queries ↔ rows of ObjectTargets."""

    queries: Tensor  # (K,) int64
    objects: Tensor  # (K,) int64


class OpenDetCriterion(nn.Module):
    """class_names: the name of each base-class label, for boxes named by their class (trainers.opendet.batch_losses).
    object_names, object_name_embeddings (N, Dt): the store's object names (vocab kind "name"), for boxes that carry
    names; a buffer outside the state dict, so it follows `.to(device)` and checkpoints hold no copy of the vocab."""

    def __init__(self, config: OpenDetLossConfig, class_names: tuple[str, ...] = (), object_names: tuple[str, ...] = (),
                 object_name_embeddings: Tensor | None = None):
        super().__init__()
        self.config = config
        self.class_names = tuple(class_names)
        self.object_names = tuple(object_names)
        embeddings = object_name_embeddings if object_name_embeddings is not None else torch.zeros(0, 0)
        self.register_buffer("object_name_embeddings", embeddings, persistent=False)

    def match(self, boxes: Tensor, padding: Tensor, scores: list[Tensor] | None, objects: ObjectTargets,
              copies: int) -> LayerMatch:
        """boxes: (B, Q, 4); padding: (B, Q) bool; scores: B × (Q_b, G_b) alignment logits against the image's
        own objects, or None (encoder proposals: boxes only)."""
        config = self.config
        query_rows, object_rows, query_offset, object_offset = [], [], 0, 0
        for image, count in enumerate(objects.counts):
            valid_boxes = boxes[image][~padding[image]].detach()
            gt = objects.boxes[object_offset:object_offset + count]
            alignment = scores[image].detach() if scores is not None else valid_boxes.new_zeros(len(valid_boxes), count)
            cost = matching_cost(valid_boxes, alignment, gt, config.match_cost_giou, config.match_cost_l1,
                                 config.match_cost_alignment if scores is not None else 0.0)
            queries, matched_objects = hungarian_match(cost, copies)
            query_rows.append(queries + query_offset)
            object_rows.append(matched_objects + object_offset)
            query_offset, object_offset = query_offset + len(valid_boxes), object_offset + count
        return LayerMatch(torch.cat(query_rows), torch.cat(object_rows))

    def box_losses(self, boxes: Tensor, match: LayerMatch, objects: ObjectTargets) -> dict[str, Tensor]:
        """boxes: (N, 4) valid queries' boxes → L1 and 1 − GIoU of matched pairs, / matched pairs (DETR)."""
        predicted, target = boxes[match.queries], objects.boxes[match.objects]
        count = max(len(match.queries), 1)
        giou = torch.diag(generalized_box_iou(box_convert(predicted, "cxcywh", "xyxy"),
                                              box_convert(target, "cxcywh", "xyxy")))
        return {"l1": (predicted - target).abs().sum() / count, "giou": (1 - giou).sum() / count}

    def binary_loss(self, logits: Tensor, boxes: Tensor, alignment: Tensor | None, match: LayerMatch,
                    objects: ObjectTargets) -> Tensor:
        """logits: (N,) of valid queries; alignment: (N, Nt) BVLA-M logits or None (then focal: no σ(s) exists)."""
        config = self.config
        matched = torch.zeros_like(logits, dtype=torch.bool)
        matched[match.queries] = True
        if not config.joint_loss or alignment is None:
            return binary_focal_loss(logits, matched, max(len(match.queries), 1), config.focal_alpha,
                                     config.focal_gamma)
        ious = torch.diag(box_iou(box_convert(boxes[match.queries], "cxcywh", "xyxy"),
                                  box_convert(objects.boxes[match.objects], "cxcywh", "xyxy")))
        targets = torch.zeros_like(logits)
        targets[match.queries] = joint_targets(logits[match.queries].sigmoid(), ious,
                                               alignment[match.queries, match.objects], config.joint_alpha,
                                               config.joint_min_iou, config.joint_min_target)
        normalizer = len(logits) if config.joint_normalizer == "queries" else len(match.queries)
        return joint_loss(logits, matched, targets, normalizer)

    def alignment_loss(self, alignment: Tensor, match: LayerMatch, objects: ObjectTargets) -> Tensor:
        config = self.config
        targets = alignment_targets(match.queries, match.objects, alignment.shape[0], objects.text_embeddings,
                                    config.same_name_threshold, masked=config.masked_alignment)
        normalizer = len(match.queries) if config.alignment_normalizer == "matched_queries" else targets.sum()
        return masked_alignment_loss(alignment, targets, normalizer, config.focal_alpha, config.focal_gamma)

    def layer_losses(self, aligner: nn.Module, boxes: Tensor, logits: Tensor, queries: Tensor | None,
                     padding: Tensor, objects: ObjectTargets, copies: int) -> tuple[dict[str, Tensor], LayerMatch]:
        """One decoder layer (queries given) or the encoder proposals (queries None: no alignment)."""
        valid = ~padding
        flat_boxes, flat_logits = boxes[valid], logits[valid]
        alignment, per_image = None, None
        if queries is not None:
            alignment = aligner(queries[valid], objects.text_embeddings)  # (N, Nt): the whole batch's objects
            rows = valid.sum(dim=1).tolist()
            per_image = [block.split(objects.counts, dim=1)[image]
                         for image, block in enumerate(alignment.split(rows, dim=0))]
        match = self.match(boxes, padding, per_image, objects, copies)
        terms = self.box_losses(flat_boxes, match, objects)
        terms["binary"] = self.binary_loss(flat_logits, flat_boxes, alignment, match, objects)
        if alignment is not None:
            terms["alignment"] = self.alignment_loss(alignment, match, objects)
        return terms, match

    def forward(self, model: nn.Module, output: QueryDetectorOutput, targets: list[dict]) -> dict[str, Tensor]:
        """model: OpenDetModel (its aligner, distiller and name generator); targets: B × {boxes (G, 4) xyxy
        pixels, text_embeddings (G, Dt), names G strings} → named, weighted loss terms (their sum is eq. 5)."""
        config = self.config
        objects = ObjectTargets.from_targets(targets, output.image_sizes)
        weights = {"l1": config.weight_l1, "giou": config.weight_giou, "binary": config.weight_binary,
                   "alignment": config.weight_alignment}
        losses: dict[str, Tensor] = {}
        auxiliary = []
        for index, layer in enumerate(output.layers):
            copies = 1 if layer.one_to_one or not config.one_to_many_matching else config.one_to_many_k
            terms, match = self.layer_losses(model.aligner, layer.boxes, layer.binary_logits, layer.queries,
                                             output.padding, objects, copies)
            weighted = {name: weights[name] * value for name, value in terms.items()}
            if index == len(output.layers) - 1:
                losses.update({f"loss_{name}": value for name, value in weighted.items()})
                final_match = match
            else:
                auxiliary.append(sum(weighted.values()))
        no_padding = torch.zeros_like(output.encoder_logits, dtype=torch.bool)
        encoder_terms, _ = self.layer_losses(model.aligner, output.encoder_boxes, output.encoder_logits, None,
                                             no_padding, objects, config.one_to_many_k)
        auxiliary.append(sum(weights[name] * value for name, value in encoder_terms.items()))
        losses["loss_aux"] = sum(auxiliary)
        losses.update(self.language_losses(model, output, final_match, objects))
        return losses

    def language_losses(self, model: nn.Module, output: QueryDetectorOutput, match: LayerMatch,
                        objects: ObjectTargets) -> dict[str, Tensor]:
        """VLD-M (eq. 7) and the name generator (eq. 9) on the last layer's matched queries."""
        config = self.config
        losses: dict[str, Tensor] = {}
        if not (config.vl_distillation or config.name_generator):
            return losses
        prompts = model.prompts(output)[~output.padding][match.queries]  # (K, Dt)
        texts = objects.text_embeddings[match.objects]
        if config.vl_distillation:
            losses["loss_distill"] = config.weight_distillation * vl_distillation_loss(prompts, texts)
        if config.name_generator:
            names = [objects.names[row] for row in match.objects.tolist()]
            for name, value in model.name_generator(prompts, texts, names).items():
                losses[name] = config.weight_name * value
        return losses
