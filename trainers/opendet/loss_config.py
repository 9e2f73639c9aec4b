"""The one config of the Open-Det losses and components; the paper's ablations (Tables 3–5) are settings here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class OpenDetLossConfig:
    """Switches, constants and weights of Open-Det training (paper Sec. 3, Appendix A.5 eq. 5–9)."""

    # --- component switches (Table 3 columns: ODR, BVLA-M, VLD-M, ONG, Losses; Tables 4 and 5) ---
    one_to_many_matching: bool = True  # ODR, Sec. 3.2: one-to-many in the first decoder layers; off = one-to-one
    bidirectional_alignment: bool = True  # BVLA-M, eq. 2; off = V-to-L cosine only
    vl_distillation: bool = True  # VLD-M loss, eq. 7
    name_generator: bool = True  # ONG, the T5 language-modelling loss, eq. 9
    lora_head: bool = True  # Table 5: LoRA on the frozen LM head (Sec. 3.5, A.2)
    text_denoising: bool = True  # Table 5: noisy text embeddings reconstructed by T5 (Sec. 3.5)
    masked_alignment: bool = True  # Table 4: MAL mask on the alignment targets; off = one-hot targets (GenerateU)
    joint_loss: bool = True  # Table 4: Joint Loss on the binary head; off = sigmoid focal loss on matched / unmatched

    # --- Masked Alignment Loss (Sec. 3.6) ---
    same_name_threshold: float = 0.99  # Open-Det Sec. 3.6: mask binarised at cos ≥ 0.99
    focal_alpha: float = 0.25  # sigmoid focal loss (Lin et al., RetinaNet; DESIGN: α 0.25)
    focal_gamma: float = 2.0  # γ 2 (same source)
    # "positives" of the normaliser: matched queries (DETR's num_boxes) or positive entries of the masked targets.
    alignment_normalizer: Literal["matched_queries", "positive_entries"] = "matched_queries"

    # --- Joint Loss (Sec. 3.6, eq. 4; constants from the released Open-Det2 code via DESIGN) ---
    joint_alpha: float = 0.25  # Open-Det Sec. 3.6: α = 0.25 (default)
    joint_min_iou: float = 0.01  # released code: IoU clamped at ≥ 0.01 before the power
    joint_min_target: float = 0.1  # released code: target t clamped at ≥ 0.1
    # eq. 4 divides by N, "the number of queries"; `positives` divides by matched queries as DETR losses do.
    joint_normalizer: Literal["queries", "positives"] = "queries"

    # --- text denoising (Sec. 3.5) ---
    denoise_probability: float = 0.9  # DESIGN (released code): noise applied with probability 0.9

    # --- matching costs (A.4: GIoU, L1 and alignment score; DINO's weights 2 / 5 / 2) ---
    match_cost_giou: float = 2.0
    match_cost_l1: float = 5.0
    match_cost_alignment: float = 2.0
    # Queries matched per object in the one-to-many layers (which layers: detector.one_to_one_layers).
    one_to_many_k: int = 4  # H-DETR's one-to-many branch repeats each object k times

    # --- loss weights (eq. 5–6; DINO's box weights) ---
    weight_giou: float = 2.0
    weight_l1: float = 5.0
    weight_binary: float = 1.0
    weight_alignment: float = 1.0
    weight_distillation: float = 1.0
    weight_name: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.denoise_probability <= 1.0:
            raise ValueError(f"loss.denoise_probability must be in [0, 1], got {self.denoise_probability}")
        if not 0.0 < self.joint_alpha < 0.5:
            raise ValueError(f"loss.joint_alpha must be in (0, 0.5) so IoU keeps a positive power 1 − 2α, "
                             f"got {self.joint_alpha}")
        if self.one_to_many_k < 1:
            raise ValueError(f"loss.one_to_many_k must be >= 1, got {self.one_to_many_k}")
