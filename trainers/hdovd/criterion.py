"""HD-OVD's total loss (eq. 11): box losses + classification + α1·CKD + α2·RKD (instance) + α3·CKD (image).

The criterion is a module because it owns the memory queues of negatives; their buffers are part of its
`state_dict()` and must be checkpointed with the model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.hdovd.detector_base import DetectorTrainOutput
from trainers.hdovd.losses.classification import CLASSIFICATION_LOSSES, roi_class_weights
from trainers.hdovd.config import HdovdLossConfig
from trainers.hdovd.losses.contrastive import INSTANCE_CONTRASTIVE_LOSSES, bidirectional_info_nce
from trainers.hdovd.losses.relational import relational_kd_loss
from trainers.hdovd.queues import EmbeddingQueue
from trainers.pseudo_weights import PseudoBoxWeighting

# Which distilled rows each HdovdLossConfig.distill_regions setting keeps (Table VI), given region_is_pseudo.
_REGION_SELECTORS = {
    "base_and_pseudo": lambda is_pseudo: torch.ones_like(is_pseudo),
    "base": lambda is_pseudo: ~is_pseudo,
    "pseudo": lambda is_pseudo: is_pseudo,
}


class HdovdCriterion(nn.Module):
    """Maps a DetectorTrainOutput and the batch's CLIP embeddings to named, weighted loss terms."""

    def __init__(self, config: HdovdLossConfig, embed_dim: int, pseudo_weighting: PseudoBoxWeighting | None = None):
        """pseudo_weighting: how hdovd_losses turns each pseudo box's stored score into its α (eq. 5); by default
        `config.pseudo_weight_transform` without μ, σ (enough for `as_stored`; `eq5` needs them from the store)."""
        super().__init__()
        self.config = config
        self.pseudo_weighting = pseudo_weighting or PseudoBoxWeighting(config.pseudo_weight_transform)
        # Teacher queues hold CLIP embeddings; student queues hold detached detector queries, used by the
        # bidirectional (InfoNCE) terms for the teacher→student direction, as the released code does.
        self.region_teacher_queue = EmbeddingQueue(config.region_queue_length, embed_dim)
        self.region_student_queue = EmbeddingQueue(config.region_queue_length, embed_dim)
        self.image_teacher_queue = EmbeddingQueue(config.image_queue_length, embed_dim)
        self.image_student_queue = EmbeddingQueue(config.image_queue_length, embed_dim)

    def forward(self, output: DetectorTrainOutput, region_embeddings: Tensor, image_embeddings: Tensor) -> dict[str, Tensor]:
        """region_embeddings: (Σ(G + P), D) float, the batch's CLIP region embeddings; output.region_rows picks the
        teacher of each distilled region. image_embeddings: (B, D) float, CLIP global embeddings row-aligned with
        output.image_queries. Returns name → weighted scalar; the training loss is the sum of the values."""
        cfg = self.config
        losses = {name: cfg.weight_box * value for name, value in output.box_losses.items()}
        losses["loss_cls"] = cfg.weight_classification * self._classification(output)
        if len(output.region_rows) and int(output.region_rows.max()) >= region_embeddings.shape[0]:
            raise ValueError(f"a distilled region names row {int(output.region_rows.max())} of "
                             f"{region_embeddings.shape[0]} region embeddings: rows must be the batch's")
        keep = _REGION_SELECTORS[cfg.distill_regions](output.region_is_pseudo)
        queries = output.region_queries[keep]
        teachers = F.normalize(region_embeddings[output.region_rows[keep]].to(queries.dtype), dim=-1)
        if cfg.instance_contrastive:
            contrastive = INSTANCE_CONTRASTIVE_LOSSES[cfg.instance_contrastive_variant]
            losses["loss_ckd_instance"] = cfg.alpha_instance_contrastive * contrastive(
                queries, teachers, self.region_teacher_queue.contents(), self.region_student_queue.contents(),
                cfg.tau_ckd)
        if cfg.instance_relational:
            losses["loss_rkd_instance"] = cfg.alpha_instance_relational * relational_kd_loss(
                queries, teachers, cfg.tau_rkd, cfg.rkd_variant, cfg.rkd_exclude_diagonal, cfg.rkd_temperature)
        image_students = output.image_queries
        image_teachers = F.normalize(image_embeddings.to(image_students.dtype), dim=-1)
        if cfg.image_contrastive:
            losses["loss_ckd_image"] = cfg.alpha_image_contrastive * bidirectional_info_nce(
                image_students, image_teachers, cfg.tau_ckd,
                self.image_teacher_queue.contents(), self.image_student_queue.contents())
        if self.training and torch.is_grad_enabled():
            # Enqueue after the losses, so a batch is never its own queued negative (MoCo order).
            self.region_teacher_queue.push(teachers)
            self.region_student_queue.push(queries)
            self.image_teacher_queue.push(image_teachers)
            self.image_student_queue.push(image_students)
        return losses

    def _classification(self, output: DetectorTrainOutput) -> Tensor:
        cfg = self.config
        weights = roi_class_weights(output.matched_pseudo_weights, cfg.pseudo_weighting)
        loss = CLASSIFICATION_LOSSES[cfg.classification_variant]
        return loss(output.class_logits, output.background_logits, output.class_targets, weights,
                    cfg.focal_alpha, cfg.focal_gamma)
