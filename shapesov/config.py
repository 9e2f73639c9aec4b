"""The one config of the ShapesOV generator stage (loaded with `schemas.config.load_config`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from shapesov.proposals import ProposalConfig
from shapesov.scenes import SceneConfig


@dataclass(frozen=True)
class ShapesConfig:
    """Everything that decides the bytes of a generated ShapesOV: same config, same files."""

    seed: int = 0
    train_images: int = 2000
    val_images: int = 300
    broken_good_images: int = 2  # valid images that sit beside the broken entries of `broken/`
    jpeg_quality: int = 90
    scene: SceneConfig = field(default_factory=SceneConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
