"""The Open-Det training losses of one batch (Appendix A.5, eq. 5–9), layer by layer of the decoder.

Each decoder layer matches its queries to the objects (one-to-many in the first layers, one-to-one in the last, Sec.
3.2) and pays L1 + GIoU on matched boxes, loss_bce on the binary head (the released code's focal loss + Joint Loss,
or eq. 4's Joint Loss alone) and the Masked Alignment Loss on BVLA-M's scores of each image's queries against that
image's own objects. The last layer's matched queries (and, as in the released code, those of the layer before it)
also become VL-prompts: VLD-M distils them toward the objects' text embeddings, and T5 learns to name them. The
encoder's proposals, from which the decoder's queries are selected, are trained as the released code trains its
`interm_outputs` (qfreeDet.py SetCriterion.forward): matched one-to-one, with box terms, loss_bce and MAL on the
scores of their own alignment module.

Normalisers as released: the box terms and loss_bce divide by the batch's objects (times a layer's one-to-many
copies) averaged over the DDP processes (`num_boxes`), MAL by its own positive entries.

Objects are the images' named ground-truth boxes and, with `loss.pseudo_names`, pseudo boxes named by their
CLIP-picked label: those are matched and are positives of the binary and alignment losses like any object, never
enter the box losses, and weight their language terms by their stored score.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert, box_iou

from trainers.distributed import count_over_ranks
from trainers.modeling.box_criterion import BoxCriterion, BoxTargets, LayerMatch, binary_focal_loss
from trainers.modeling.matching import MatchingCosts
from trainers.modeling.query_detector import DecoderLayerOutput, QueryDetectorOutput
from trainers.opendet.config import OpenDetLossConfig
from trainers.opendet.losses import (alignment_entries, alignment_targets, joint_loss, joint_targets,
                                     masked_alignment_loss, vl_distillation_loss)


@dataclass(kw_only=True)
class ObjectTargets(BoxTargets):
    """The batch's objects, flattened (BoxTargets), with what names them. text_embeddings: (Nt, Dt) float of each
    object's name; names: Nt strings; weights: (Nt,) float, the weight of each object's language terms (1 for a box
    label, the stored score s_j for a pseudo name)."""

    text_embeddings: Tensor
    names: list[str]
    weights: Tensor

    @classmethod
    def from_targets(cls, targets: list[dict], image_sizes: list[tuple[int, int]]) -> "ObjectTargets":
        """targets: B × {boxes (G, 4) xyxy pixels, text_embeddings (G, Dt), names G strings, and optionally
        weights (G,) float (default 1) and regress (G,) bool (default True: every box is fitted)}."""
        boxes = BoxTargets.from_pixel_boxes([t["boxes"] for t in targets], image_sizes)
        device = boxes.boxes.device
        weights = [t.get("weights", torch.ones(len(t["boxes"]), device=device)) for t in targets]
        regress = [t.get("regress", torch.ones(len(t["boxes"]), dtype=torch.bool, device=device)) for t in targets]
        return cls(boxes.boxes, boxes.counts, torch.cat(regress).to(device),
                   text_embeddings=torch.cat([t["text_embeddings"] for t in targets]),
                   names=[name for t in targets for name in t["names"]],
                   weights=torch.cat(weights).to(device, torch.float32))

    @property
    def images(self) -> Tensor:
        """(Nt,) int64, the batch image of each object."""
        return torch.repeat_interleave(torch.arange(len(self.counts), device=self.boxes.device),
                                       torch.as_tensor(self.counts, device=self.boxes.device))


# The released one-to-many matcher (qfreeDet.py SetCriterion.__init__ builds HungarianMatcher_One_to_Many with
# cost_class=0.2, focal_alpha=2.0; its objectness cost takes the same α).
ONE_TO_MANY_COST_ALIGNMENT, ONE_TO_MANY_FOCAL_ALPHA = 0.2, 2.0
# The released matchers add the objectness's focal cost unweighted.
COST_OBJECTNESS = 1.0


def box_criterion_from_config(config: OpenDetLossConfig) -> BoxCriterion:
    """The shared box part of the criterion with Open-Det's matching costs, box weights and focal constants."""
    costs = MatchingCosts(config.match_cost_giou, config.match_cost_l1, config.match_cost_alignment,
                          form=config.match_cost_form)
    one_to_many = costs
    if config.match_cost_form == "focal":
        costs = MatchingCosts(config.match_cost_giou, config.match_cost_l1, config.match_cost_alignment,
                              COST_OBJECTNESS, "focal", config.focal_alpha)
        one_to_many = MatchingCosts(config.match_cost_giou, config.match_cost_l1, ONE_TO_MANY_COST_ALIGNMENT,
                                    COST_OBJECTNESS, "focal", ONE_TO_MANY_FOCAL_ALPHA)
    return BoxCriterion(costs, weight_giou=config.weight_giou, weight_l1=config.weight_l1,
                        weight_binary=config.weight_binary, focal_alpha=config.focal_alpha,
                        focal_gamma=config.focal_gamma, one_to_many_costs=one_to_many)


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
                    objects: ObjectTargets, num_boxes: float) -> Tensor:
        """logits: (N,) of valid queries; boxes: (N, 4); alignment: (N, Nt) BVLA-M logits → loss_bce (unweighted).

        released: focal loss + Joint Loss, both / num_boxes (the batch's objects × the layer's copies, averaged
        over the processes); eq4: the Joint Loss / N queries. Without `loss.joint_loss` the focal loss stands alone
        (/ num_boxes, or / matched queries in the eq4 form)."""
        config = self.config
        matched = torch.zeros_like(logits, dtype=torch.bool)
        matched[match.queries] = True
        if config.binary_loss == "released":
            loss = binary_focal_loss(logits, matched, num_boxes, config.focal_alpha, config.focal_gamma)
        elif not config.joint_loss:
            return self.box_criterion.objectness_loss(logits, match)
        else:
            loss = logits.sum() * 0.0
        if config.joint_loss:
            ious = torch.diag(box_iou(box_convert(boxes[match.queries], "cxcywh", "xyxy"),
                                      box_convert(objects.boxes[match.objects], "cxcywh", "xyxy")))
            targets = torch.zeros_like(logits)
            targets[match.queries] = joint_targets(logits[match.queries].sigmoid(), ious,
                                                   alignment[match.queries, match.objects], config.joint_alpha,
                                                   config.joint_min_iou, config.joint_min_target)
            normalizer = num_boxes if config.binary_loss == "released" else len(logits)
            loss = loss + joint_loss(logits, matched, targets, normalizer, config.joint_detach_weights)
        return loss

    def alignment_loss(self, alignment: Tensor, boxes: Tensor, query_images: Tensor, match: LayerMatch,
                       objects: ObjectTargets, copies: int) -> Tensor:
        """MAL over the pairs of each image's queries and that image's objects (`loss.alignment_texts=image`), or
        over every pair of the batch (`batch`). alignment: (N, Nt) logits; boxes: (N, 4) cxcywh; query_images: (N,)."""
        config = self.config
        entries, same_image = None, None
        if config.alignment_texts == "image":
            object_images = objects.images
            same_image = object_images[:, None] == object_images[None, :]
            ious = fills_width = None
            if copies == 1 and config.alignment_min_iou > 0:
                # The released code's padded text width is the batch's largest object count: the IoU mask applies
                # to the images that fill it, in the layers matched one-to-one.
                widest = max(objects.counts, default=0)
                fills_width = torch.as_tensor([count == widest for count in objects.counts], device=boxes.device)
                ious = box_iou(box_convert(boxes.detach(), "cxcywh", "xyxy"),
                               box_convert(objects.boxes, "cxcywh", "xyxy"))
            entries = alignment_entries(query_images, object_images, ious, fills_width, config.alignment_min_iou)
        targets = alignment_targets(match.queries, match.objects, alignment.shape[0], objects.text_embeddings,
                                    config.same_name_threshold, masked=config.masked_alignment,
                                    same_image=same_image)
        if config.alignment_normalizer == "matched_queries":
            normalizer = len(match.queries)
        else:
            normalizer = float((targets * entries).sum() if entries is not None else targets.sum())
        return masked_alignment_loss(alignment, targets, normalizer, config.focal_alpha, config.focal_gamma, entries)

    def stage_losses(self, stage: DecoderLayerOutput, aligned: Tensor, aligner: nn.Module, padding: Tensor,
                     objects: ObjectTargets, copies: int, normalizers: tuple[float, float]
                     ) -> tuple[dict[str, Tensor], LayerMatch]:
        """One decoder layer or the proposals: box terms matched with the alignment scores and objectness, loss_bce,
        MAL (all unweighted). aligned: (B, Q, d) the queries `aligner` scores; normalizers: the batch's objects and
        regressed objects, averaged over the processes (count_over_ranks)."""
        valid = ~padding
        flat_boxes, flat_logits = stage.boxes[valid], stage.binary_logits[valid]
        alignment = aligner(aligned[valid], objects.text_embeddings)  # (N, Nt): every query against every object
        rows = valid.sum(dim=1).tolist()
        query_images = torch.repeat_interleave(torch.arange(len(rows), device=flat_logits.device),
                                               torch.as_tensor(rows, device=flat_logits.device))
        per_image = [block.split(objects.counts, dim=1)[image]
                     for image, block in enumerate(alignment.split(rows, dim=0))]
        match = self.box_criterion.match(stage.boxes, padding, objects, copies, per_image, stage.binary_logits)
        terms = self.box_criterion.box_losses(flat_boxes, match, objects, normalizers[1] * copies)
        terms["binary"] = self.binary_loss(flat_logits, flat_boxes, alignment, match, objects,
                                           normalizers[0] * copies)
        terms["alignment"] = self.alignment_loss(alignment, flat_boxes, query_images, match, objects, copies)
        return terms, match

    def forward(self, model: nn.Module, output: QueryDetectorOutput, targets: list[dict]) -> dict[str, Tensor]:
        """model: OpenDetModel (its aligners, refiner, distiller and name generator); targets: B × {boxes (G, 4)
        xyxy pixels, text_embeddings (G, Dt), names G strings, optional weights and regress (ObjectTargets)} →
        named, weighted loss terms (their sum is eq. 5)."""
        config = self.config
        objects = ObjectTargets.from_targets(targets, output.box_frames)
        device = objects.boxes.device
        regressed = len(objects.boxes) if objects.regress is None else int(objects.regress.sum())
        normalizers = (count_over_ranks(len(objects.boxes), device), count_over_ranks(regressed, device))
        weights = {"l1": config.weight_l1, "giou": config.weight_giou, "binary": config.weight_binary,
                   "alignment": config.weight_alignment}
        losses: dict[str, Tensor] = {}
        auxiliary, matches = [], {}
        last = len(output.layers) - 1
        language_layers = {last, last - 1} if config.auxiliary_language_layer and last >= 1 else {last}
        for index, layer in enumerate(output.layers):
            copies = 1 if layer.one_to_one or not config.one_to_many_matching else config.one_to_many_k
            terms, match = self.stage_losses(layer, model.aligned_queries(output, index), model.aligner,
                                             output.padding, objects, copies, normalizers)
            weighted = {name: weights[name] * value for name, value in terms.items()}
            if index == last:
                losses.update({f"loss_{name}": value for name, value in weighted.items()})
            else:
                auxiliary.append(sum(weighted.values()))
            if index in language_layers:
                matches[index] = match
        proposal_terms, _ = self.stage_losses(output.proposals, output.proposals.queries, model.proposal_aligner,
                                              output.padding, objects, 1, normalizers)
        auxiliary.append(sum(weights[name] * value for name, value in proposal_terms.items()))
        losses["loss_aux"] = sum(auxiliary)
        losses.update(self.language_losses(model, output, matches, objects))
        return losses

    def language_losses(self, model: nn.Module, output: QueryDetectorOutput, matches: dict[int, LayerMatch],
                        objects: ObjectTargets) -> dict[str, Tensor]:
        """VLD-M (eq. 7: per layer a mean per image, then over the images, the layers' terms summed, as the released
        DETRsegmVLUni.l2_loss and forward) and the name generator (eq. 9, one loss over the layers' matched queries
        together) on the matched queries of `matches`' layers. VLD-M compares the prompts as fused; T5 reads them
        through the released form's fusion dropout."""
        config = self.config
        losses: dict[str, Tensor] = {}
        if not (config.vl_distillation or config.name_generator):
            return losses
        prompts, rows, distill = [], [], []
        object_images = objects.images
        for layer, match in sorted(matches.items()):
            versions = model.prompt_versions(output, layer, match.queries)  # 3 × (K, d)
            if config.vl_distillation:
                distill.append(vl_distillation_loss(model.distiller.fuse_versions(versions),
                                                    objects.text_embeddings[match.objects],
                                                    objects.weights[match.objects], object_images[match.objects]))
            prompts.append(model.distiller.fuse_versions(versions, for_names=True))
            rows.append(match.objects)
        if config.vl_distillation:
            losses["loss_distill"] = config.weight_distillation * sum(distill)
        if config.name_generator:
            rows = torch.cat(rows)
            names = [objects.names[row] for row in rows.tolist()]
            counts = objects.counts
            if model.name_generator.denoise_form == "released":  # every object of every image, as the released code
                texts, text_names, text_weights = objects.text_embeddings, objects.names, objects.weights
            else:  # the last layer's matched objects
                last = matches[max(matches)].objects
                texts, text_weights = objects.text_embeddings[last], objects.weights[last]
                text_names, counts = [objects.names[row] for row in last.tolist()], [len(last)]
            generated = model.name_generator(torch.cat(prompts), names, texts, text_names, objects.weights[rows],
                                             text_weights, counts)
            for name, value in generated.items():
                losses[name] = config.weight_name * value
        return losses
