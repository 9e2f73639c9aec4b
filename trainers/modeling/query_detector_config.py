"""The Open-Det detector config: backbone, transformer sizes, query selection. Defaults are the CPU demo detector."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueryDetectorConfig:
    """A lean DETR-like detector (Open-Det Sec. 3.2). The paper's detector: 6 decoder layers, 256-d queries."""

    backbone: str = "tiny"  # key of trainers.modeling.backbones.BACKBONES (the FPN's maps feed the encoder)
    backbone_weights: str | None = None  # local ImageNet checkpoint (resnet50 only); None = random
    trainable_backbone_layers: int = 3
    feature_maps: tuple[str, ...] = ("1", "2")  # FPN maps as encoder tokens; tiny at 128 px: 16×16 + 8×8 tokens
    image_size: int = 128  # images are resized to a square of this side (ShapesOV renders at 128 px)
    hidden_dim: int = 64  # query width (the paper: 256; 64 fits the 2-core demo)
    num_heads: int = 4
    ffn_dim: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 4  # the paper: 6 = 4 one-to-many + 2 one-to-one
    one_to_one_layers: int = 2  # Open-Det Sec. 3.2: the last two layers use self-attention and one-to-one matching
    selection_threshold: float = 0.05  # Open-Det Sec. 3.2, eq. 1: tokens with σ(score) > 0.05 become queries
    min_queries: int = 10  # bounds on the threshold's count (an untrained head passes every or no token)
    max_queries: int = 100
    # Deformable DETR (Zhu et al. 2021) samples 4 points per head and level; 0 = global attention over all tokens.
    sampling_points: int = 4
    anchor_scale: float = 0.05  # encoder proposals: anchor side 0.05 · 2^level of the image (DINO two-stage)

    def __post_init__(self) -> None:
        if not 1 <= self.one_to_one_layers <= self.decoder_layers:
            raise ValueError(f"detector.one_to_one_layers={self.one_to_one_layers} must be in [1, "
                             f"detector.decoder_layers={self.decoder_layers}]")
        if not 1 <= self.min_queries <= self.max_queries:
            raise ValueError("detector.min_queries must be in [1, detector.max_queries]")
        if self.sampling_points < 0:
            raise ValueError(f"detector.sampling_points={self.sampling_points} must be >= 0 (0 = global attention)")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"detector.hidden_dim={self.hidden_dim} must divide by num_heads={self.num_heads}")
