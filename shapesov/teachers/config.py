"""The one config of the teachers stage (loaded with `schemas.config.load_config`; stored in MANIFEST.json)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class BackgroundCropConfig:
    """Boxes on nothing the teachers learn from beside the object crops (shapesov/teachers/background_boxes.py):
    what a proposal network fires on a scene besides its objects. Each is captioned by what it frames."""

    # Random boxes anywhere, like the simulated proposals' false positives (shapesov/proposals.py).
    anywhere_per_scene: int = 2
    # Boxes over a small part of one shape: a proposal network fires on parts of objects as well.
    part_per_object: int = 1
    # Proposal-like boxes jittered widely around a shape; IoU >= 0.5 with it (the rule pseudo boxes are judged by,
    # featurestore/commands/label_quality.py) names the shape, less names nothing, so both sides of the rule are seen.
    loose_per_object: int = 1
    loose_jitter: float = 0.3  # std of centre shift and log-size change, relative to the shape's size


@dataclass(frozen=True)
class ClipTrainConfig:
    """Contrastive training of the tiny open_clip CLIP on rendered ShapesOV crops."""

    model_name: str = "shapes-clip-tiny"  # shapesov/teachers/model_configs/<name>.json
    image_size: int = 32  # must match the model config's vision_cfg.image_size
    train_scenes: int = 4000  # about 2.5 objects each
    crops_per_object: int = 2  # random crop modes per object (tight / square / context)
    box_jitter: float = 0.06  # relative std of box noise, like proposals around an object
    # Tight / square / context crop shares. Square (OADP) crops leave the object an eighth of 32x32 pixels, too
    # little to learn from often; they stay a minority so the embeddings still see context-heavy crops.
    crop_mode_weights: tuple[float, ...] = (0.5, 0.2, 0.3)
    batch_size: int = 128
    steps: int = 1000
    warmup_steps: int = 50
    # Separate learning rates per tower (DESIGN.md prototype): the randomly initialised vision tower needs large
    # steps, the text tower with its 49k-row embedding table is stable only with smaller ones.
    lr_visual: float = 2e-3
    lr_text: float = 5e-4
    weight_decay: float = 0.05
    init_logit_scale: float = math.log(30.0)  # DESIGN.md prototype: ln 30 (open_clip's default is ln(1/0.07))
    # Whether CLIP learns the crops of nothing too ("a photo of the background."); ClipCap always does.
    learn_background: bool = True


@dataclass(frozen=True)
class ClipCapTrainConfig:
    """Training of the tiny ClipCap (MLP mapper + small GPT-2) on frozen CLIP embeddings of the same crops."""

    vocab_size: int = 400  # byte-level BPE: 256 byte symbols + merges + <|endoftext|>
    n_embd: int = 96
    n_layer: int = 2
    n_head: int = 4
    n_positions: int = 48
    prefix_length: int = 4
    normalize_prefix: bool = True  # the feature store keeps L2-normalised region embeddings
    batch_size: int = 128
    steps: int = 900
    warmup_steps: int = 50
    lr: float = 2e-3
    weight_decay: float = 0.01


@dataclass(frozen=True)
class TeacherEvalConfig:
    """How the teacher report measures the teachers on the generated ShapesOV val split."""

    crop_modes: tuple[Literal["tight", "square", "context"], ...] = ("tight", "square", "context")  # crops.py
    # The crop mode of the shipped extract-features config (configs/shapes/extract_features.yaml): crops of nothing
    # are measured in this mode only, one of crop_modes.
    pipeline_crop_mode: Literal["tight", "square", "context"] = "context"
    prompt: str = "a photo of a {}."  # the pipeline's default prompt
    beam_size: int = 3
    max_tokens: int = 16


@dataclass(frozen=True)
class TeachersConfig:
    seed: int = 0
    # One thread: results of CPU kernels may differ between thread counts, and more threads were slower on a shared
    # 2-core machine (bench/PERFORMANCE.md, notes behind the shipped pipeline configs).
    threads: int = 1
    background: BackgroundCropConfig = field(default_factory=BackgroundCropConfig)
    clip: ClipTrainConfig = field(default_factory=ClipTrainConfig)
    clipcap: ClipCapTrainConfig = field(default_factory=ClipCapTrainConfig)
    eval: TeacherEvalConfig = field(default_factory=TeacherEvalConfig)
