"""The engine's keys of a training run (`make train`): optimisation, schedule, devices, logging, the evaluated weights.

A run's config is its method's run config (`TrainingMethod.run_config`): these keys plus the method's own section,
named after the method (`hdovd:`, `opendet:`, …), defined in the method's package. Methods that stream the feature
store extend `StoreTrainConfig` (the store, its stream, detection evaluation). A run carries only its own method's
section: trainers.methods loads the right class from the `method` key.

Choices are `Literal` types (the loader refuses anything else); ranges are checked in `__post_init__`, and messages
name the dotted key. Presets are layered YAML files under configs/ (`_base_`, repeatable --config).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class StreamConfig:
    """How the store is streamed into training samples (trainers.data.streaming)."""

    image_size: int = 128  # longest side after resize
    flip_probability: float = 0.5
    shuffle_buffer: int = 256
    seed: int = 0
    use_pseudo_labels: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"stream.flip_probability must be in [0, 1], got {self.flip_probability}")


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    # The 1x schedule: 12 epochs, learning rate x0.1 after epochs 8 and 11 (Detectron / mmdet "1x").
    epochs: int = 12
    lr_milestones: tuple[int, ...] = (8, 11)
    lr_gamma: float = 0.1
    schedule_scale: float = 1.0  # 2.0 = "2x"; epochs and milestones are scaled together
    warmup_steps: int = 100  # linear warm-up from 0.001 x lr (mmdet: 500 iterations at ratio 0.001)
    clip_grad_norm: float = 10.0  # 0 = off
    accumulate: int = 1  # micro-batches per optimizer step
    # > 0 keeps an exponential moving average of the weights with this decay (trainers/weight_average.py),
    # evaluated in place of the last step's weights (eval.weights); 0 = none.
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.accumulate < 1:
            raise ValueError(f"optim.accumulate must be >= 1, got {self.accumulate}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in [0, 1) (0 = no average), got {self.ema_decay}")


@dataclass(frozen=True)
class EvalConfig:
    """What every method's evaluation shares; methods extend it with what they evaluate against."""

    batch_size: int = 16
    max_images: int = 0  # 0 = all
    # average: the checkpoint's weight average when its run kept one (optim.ema_decay > 0), else the trained
    # weights; trained: the weights of the last optimizer step.
    weights: Literal["average", "trained"] = "average"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_images < 0:
            raise ValueError(f"eval.batch_size must be >= 1 and eval.max_images >= 0 (0 = all), got "
                             f"{self.batch_size} and {self.max_images}")


@dataclass(frozen=True)
class DetectionEvalConfig(EvalConfig):
    """Detection AP on an annotation file with base and novel classes (OV-COCO AP50 or LVIS AP_r/c/f)."""

    annotations: str = "data/shapes/annotations/val.json"  # COCO json with base and novel classes
    image_root: str = "data/shapes/images/val"
    protocol: Literal["ov_coco", "lvis"] = "ov_coco"


@dataclass(frozen=True)
class TrainConfig:
    """The engine's keys, shared by every method. `method` picks the run config class (trainers.methods)."""

    method: str = "hdovd"  # a key of trainers.methods.METHODS; the run's config then has that method's section
    out_dir: str = "runs/hdovd"
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    batch_size: int = 8  # images per micro-batch and process
    num_workers: int = 1
    bf16: bool = False  # autocast to bfloat16 (fast on recent CPUs and GPUs)
    # auto: cuda when visible, else cpu. Under torchrun each process takes cuda:LOCAL_RANK.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    log_every: int = 20  # optimizer steps between log lines (losses become Python floats only then)
    checkpoint_every: int = 200  # optimizer steps
    max_steps: int = 0  # stop after this many optimizer steps (0 = the whole schedule); for smoke runs

    def __post_init__(self) -> None:
        for name in ("batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_workers", "threads", "max_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class StoreTrainConfig(TrainConfig):
    """The engine's keys of a method that streams the feature store (HD-OVD, Open-Det)."""

    store: str = "data/store"
    image_root: str = "data/shapes/images/train"  # where the store's images.file_name resolve
    stream: StreamConfig = field(default_factory=StreamConfig)
    eval: DetectionEvalConfig = field(default_factory=DetectionEvalConfig)
    # Pseudo boxes are meant for objects of no base class. One whose label names a base class ("red triangle")
    # is a base object the proposal framed badly, or a caption error; as a pseudo class it would compete with
    # the base class's own column. True leaves such boxes out (label words checked against base class names).
    drop_pseudo_labels_naming_base: bool = False
