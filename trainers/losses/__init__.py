"""HD-OVD losses (paper Sec. III): instance contrastive / relational distillation, novel-class-aware
classification, image-level contrastive distillation, combined by `HdovdCriterion` under `HdovdLossConfig`."""
from trainers.losses.classification import BACKGROUND, CLASSIFICATION_LOSSES, roi_class_weights
from trainers.losses.config import HdovdLossConfig
from trainers.losses.contrastive import (
    INSTANCE_CONTRASTIVE_LOSSES,
    bidirectional_info_nce,
    sigmoid_contrastive_loss,
)
from trainers.losses.criterion import HdovdCriterion
from trainers.losses.relational import relational_kd_loss

__all__ = [
    "BACKGROUND",
    "CLASSIFICATION_LOSSES",
    "INSTANCE_CONTRASTIVE_LOSSES",
    "HdovdCriterion",
    "HdovdLossConfig",
    "bidirectional_info_nce",
    "relational_kd_loss",
    "roi_class_weights",
    "sigmoid_contrastive_loss",
]
