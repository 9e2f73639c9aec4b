"""The model side of an HD-OVD run in one config: detector, losses, inference; checked to fit together.

Load it like every stage config: `load_config(HdovdConfig, path, overrides)` with keys such as
`detector.backbone=resnet50`, `loss.instance_relational=false`, `inference.beta_novel=0.45`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from trainers.hdovd.detector_config import DetectorConfig
from trainers.hdovd.detect import DISTILL_PROBABILITIES, InferenceConfig
from trainers.hdovd.loss_config import HdovdLossConfig

# Each classification loss is defined for one kind of classifier head (and its inference probabilities).
CLASSIFIER_OF_LOSS = {
    "sigmoid_focal": "sigmoid",  # eq. 4: p = sigmoid(cos·τ_cls), background = no class fires
    "weighted_softmax": "softmax_background",  # released code: softmax with a learnable background embedding
}


@dataclass(frozen=True)
class HdovdConfig:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    loss: HdovdLossConfig = field(default_factory=HdovdLossConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        wanted = CLASSIFIER_OF_LOSS[self.loss.classification_variant]
        if self.detector.classifier != wanted:
            raise ValueError(f"loss.classification_variant={self.loss.classification_variant} needs "
                             f"detector.classifier={wanted}, got {self.detector.classifier}")
        if self.inference.distill_probability not in DISTILL_PROBABILITIES:
            raise ValueError(f"inference.distill_probability={self.inference.distill_probability!r}; choose one of "
                             f"{', '.join(DISTILL_PROBABILITIES)}")
        if self.inference.tau_distill != self.loss.tau_ckd:
            raise ValueError(f"inference.tau_distill={self.inference.tau_distill} must equal loss.tau_ckd="
                             f"{self.loss.tau_ckd}: eq. 12 scores p_dis with the temperature it was trained at")
