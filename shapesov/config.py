"""The one config of the ShapesOV generator stage (configs/shapes/sample.yaml), every section of it; loaded with
`schemas.config.load_config`."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn. Sizes in pixels; radius fractions are relative to the image's shorter side."""

    min_side: int = 128
    max_side: int = 256
    min_objects: int = 1
    max_objects: int = 4
    min_radius_fraction: float = 0.08
    max_radius_fraction: float = 0.22
    # An occluded object keeps at least this share of its pixels, so every annotated box is still recognisable.
    min_visible_fraction: float = 0.6
    max_angle_deg: float = 15.0  # larger turns would make a square look like a diamond
    max_aspect_stretch: float = 0.12
    placement_tries: int = 40


@dataclass(frozen=True)
class ProposalConfig:
    """Noise model of the simulated proposal network."""

    recall: float = 0.9  # chance that an object gets any proposal at all
    min_boxes_per_object: int = 1
    max_boxes_per_object: int = 3
    jitter: float = 0.12  # std of centre shift and log-size change, relative to the object's size
    min_false_positives: int = 2
    max_false_positives: int = 8
    score_noise: float = 0.08  # std of the noise added to the IoU-based score
    min_box_side: float = 4.0  # pixels; smaller boxes are discarded like an RPN's min-size filter


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
