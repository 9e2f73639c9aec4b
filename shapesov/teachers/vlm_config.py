"""The config of the ShapesOV instruction-following teacher (configs/shapes/teacher_vlm.yaml; stored in its
MANIFEST.json).

Its own file and hash, apart from TeachersConfig: changing it retrains this teacher only, and the CLIP and ClipCap
teachers (and their committed copies) never depend on it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VlmTeacherConfig:
    seed: int = 0
    # One thread: CPU kernels give the same bits for the same thread count (shapesov/teachers/build.py).
    threads: int = 1
    # What it learns from: every object of freshly rendered scenes (their own random stream), each behind
    # `boxes_per_object` proposal-like boxes, every box shown both ways (pipelines/region_prompts.py).
    train_scenes: int = 1500
    boxes_per_object: int = 2
    # Relative std of the boxes' centre shift and log-size change, as ShapesOV's simulated proposals have it
    # (shapesov/config.py ProposalConfig.jitter): the boxes that cover an object are what gets labelled.
    box_jitter: float = 0.12
    # The processor's view: 4x4 tiles of the CLIP's 32 px, 3x3 double windows and the thumbnail, 26 image tokens
    # (vlm/open_clip_vision.py). At 96 px an object of the whole image is too small for the CLIP to name.
    image_size: int = 128
    # The language model (a Llama config) and its tokenizer (byte-level BPE, digits one by one).
    vocab_size: int = 512
    hidden_size: int = 96
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    max_positions: int = 128
    batch_size: int = 64
    steps: int = 1500
    warmup_steps: int = 50
    lr: float = 2e-3
    weight_decay: float = 0.01
    eval_objects: int = 300  # val objects the report asks about, per region prompt
