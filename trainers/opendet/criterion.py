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
from torchvision.ops import box_convert, box_iou

from trainers.modeling.box_criterion import BoxCriterion, BoxTargets, LayerMatch
from trainers.modeling.query_detector import QueryDetectorOutput
from trainers.opendet.config import OpenDetLossConfig
from trainers.opendet.losses import (
    alignment_targets,
    joint_loss,
    joint_targets,
    masked_alignment_loss,
    vl_distillation_loss,
)


@dataclass
class ObjectTargets(BoxTargets):
    """The batch's objects, flattened (BoxTargets), with what names them. text_embeddings: (Nt, Dt) float of each
    object's name; names: Nt strings."""

    text_embeddings: Tensor
    names: list[str]

    @classmethod
    def from_targets(cls, targets: list[dict], image_sizes: list[tuple[int, int]]) -> "ObjectTargets":
        """targets: B × {boxes (G, 4) xyxy pixels, text_embeddings (G, Dt), names G strings}."""
        boxes = BoxTargets.from_pixel_boxes([t["boxes"] for t in targets], image_sizes)
        return cls(boxes.boxes, boxes.counts, torch.cat([t["text_embeddings"] for t in targets]),
                   [name for t in targets for name in t["names"]])


def box_criterion_from_config(config: OpenDetLossConfig) -> BoxCriterion:
    """The shared box part of the criterion with Open-Det's matching costs, box weights, focal constants and k."""
    return BoxCriterion(cost_giou=config.match_cost_giou, cost_l1=config.match_cost_l1,
                        cost_alignment=config.match_cost_alignment, weight_giou=config.weight_giou,
                        weight_l1=config.weight_l1, weight_binary=config.weight_binary,
                        focal_alpha=config.focal_alpha, focal_gamma=config.focal_gamma,
                        one_to_many_k=config.one_to_many_k)


class OpenDetCriterion(nn.Module):
    """class_names: the name of each base-class label, for boxes named by their class (trainers.opendet.batch_losses).
    object_names, object_name_embeddings (N, Dt): the store's object names (vocab kind "name"), for boxes that carry
    names; a buffer outside the state dict, so it follows `.to(device)` and checkpoints hold no copy of the vocab."""

    def __init__(self, config: OpenDetLossConfig, class_names: tuple[str, ...] = (), object_names: tuple[str, ...] = (),
                 object_name_embeddings: Tensor | None = None):
        super().__init__()
        self.config = config
        self.box_criterion = box_criterion_from_config(config)
        self.class_names = tuple(class_names)
        self.object_names = tuple(object_names)
        embeddings = object_name_embeddings if object_name_embeddings is not None else torch.zeros(0, 0)
        self.register_buffer("object_name_embeddings", embeddings, persistent=False)

    def binary_loss(self, logits: Tensor, boxes: Tensor, alignment: Tensor, match: LayerMatch,
                    objects: ObjectTargets) -> Tensor:
        """logits: (N,) of valid queries; boxes: (N, 4); alignment: (N, Nt) BVLA-M logits. The Joint Loss, or with
        `loss.joint_loss` off the focal loss of the shared box criterion."""
        config = self.config
        if not config.joint_loss:
            return self.box_criterion.objectness_loss(logits, match)
        matched = torch.zeros_like(logits, dtype=torch.bool)
        matched[match.queries] = True
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

    def layer_losses(self, aligner: nn.Module, boxes: Tensor, logits: Tensor, queries: Tensor, padding: Tensor,
                     objects: ObjectTargets, copies: int) -> tuple[dict[str, Tensor], LayerMatch]:
        """One decoder layer: box terms matched with the alignment scores, the binary head's loss, MAL.
        boxes: (B, Q, 4); logits: (B, Q); queries: (B, Q, d); padding: (B, Q) bool."""
        valid = ~padding
        flat_boxes, flat_logits = boxes[valid], logits[valid]
        alignment = aligner(queries[valid], objects.text_embeddings)  # (N, Nt): the whole batch's objects
        rows = valid.sum(dim=1).tolist()
        per_image = [block.split(objects.counts, dim=1)[image]
                     for image, block in enumerate(alignment.split(rows, dim=0))]
        match = self.box_criterion.match(boxes, padding, objects, copies, per_image)
        terms = self.box_criterion.box_losses(flat_boxes, match, objects)
        terms["binary"] = self.binary_loss(flat_logits, flat_boxes, alignment, match, objects)
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
        # The encoder's token proposals have no queries to align: matched on boxes, focal loss on their objectness.
        no_padding = torch.zeros_like(output.encoder_logits, dtype=torch.bool)
        encoder_terms, _ = self.box_criterion.layer_losses(output.encoder_boxes, output.encoder_logits, no_padding,
                                                           objects, config.one_to_many_k)
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
