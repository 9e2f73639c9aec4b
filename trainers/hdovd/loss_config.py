"""The one config of the HD-OVD losses; every ablation of the paper's Tables V, VI and IX is a setting here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class HdovdLossConfig:
    """Switches, variants, temperatures and weights of the HD-OVD training losses (paper Sec. III, eq. 1–11)."""

    # --- component switches (Table V columns: CKD, RKD, Cls., Wei., image) ---
    instance_contrastive: bool = True  # L_ckd^ins, eq. 1–2
    instance_relational: bool = True  # L_rkd^ins, eq. 3
    pseudo_classes: bool = True  # pseudo-label text embeddings join the classifier (eq. 4, "Cls.")
    pseudo_weighting: bool = True  # α_j = σ(s_j) for pseudo classes (eq. 5, "Wei."); off: weight 1
    image_contrastive: bool = True  # L_ckd^img, eq. 6–10

    # --- which regions are distilled (Table VI: base / pseudo / both) and how many pseudo boxes (Table IX) ---
    distill_regions: Literal["base_and_pseudo", "base", "pseudo"] = "base_and_pseudo"
    max_pseudo_boxes: int = 5  # HD-OVD Sec. IV-B / Table IX: top-5 proposals per image by default

    # --- variants: the paper's formula or the released code's ---
    # sigmoid_bce: eq. 1–2 (BCE, positives on the diagonal); info_nce: released code, bidirectional CE at τ_ckd.
    instance_contrastive_variant: Literal["sigmoid_bce", "info_nce"] = "sigmoid_bce"
    # sigmoid_focal: eq. 4 (needs detector.classifier=sigmoid);
    # weighted_softmax: released code, CE with a learnable background (needs detector.classifier=softmax_background).
    classification_variant: Literal["sigmoid_focal", "weighted_softmax"] = "sigmoid_focal"
    # How a pseudo box's score s becomes its weight: `sigmoid` is eq. 5 (σ(s), s a standardised CLIP score);
    # `as_given` uses s unchanged, as the released code does with its s = σ((cos − μ)/σ)·k.
    pseudo_weight_transform: Literal["sigmoid", "as_given"] = "sigmoid"
    # Eq. 3 prints KL(P_q || P_e) (student first); the released code's mmdet KD loss computes KL(P_e || P_q).
    rkd_kl_direction: Literal["student_teacher", "teacher_student"] = "student_teacher"
    # Eq. 3 keeps the diagonal (self-similarity, constant 1·τ_rkd on both sides); True drops it from both softmaxes.
    rkd_exclude_diagonal: bool = False

    # --- temperatures (HD-OVD Sec. IV-B and released config) ---
    tau_ckd: float = 20.0  # HD-OVD eq. 2 and eq. 9–10: τ_ckd = 20
    tau_rkd: float = 5.0  # HD-OVD eq. 3: τ_rkd = 5

    # --- loss weights (HD-OVD eq. 11) ---
    alpha_instance_contrastive: float = 0.5  # α1
    alpha_instance_relational: float = 5.0  # α2
    alpha_image_contrastive: float = 0.2  # α3
    weight_classification: float = 1.0  # eq. 11 adds L_cls unweighted
    weight_box: float = 1.0  # eq. 11 adds L_box unweighted

    # --- focal loss of eq. 4 (Lin et al., RetinaNet: α = 0.25, γ = 2) ---
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    # --- memory queues of negatives (DESIGN: length 1024; the released Faster R-CNN config uses 2048 / 512) ---
    region_queue_length: int = 1024
    image_queue_length: int = 1024

    def __post_init__(self) -> None:
        if self.max_pseudo_boxes < 0:
            raise ValueError(f"loss.max_pseudo_boxes must be >= 0, got {self.max_pseudo_boxes}")
        for name in ("tau_ckd", "tau_rkd"):
            if getattr(self, name) <= 0:
                raise ValueError(f"loss.{name} must be > 0, got {getattr(self, name)}")
