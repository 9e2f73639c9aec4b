"""A proposal-network run's config: the engine's keys (trainers.config.TrainConfig), the `proposer` section (its
data, the network, the proposals it outputs) and the `eval` section (how their recall is measured).

Plain dataclasses without heavy imports. Defaults are the CPU demo on ShapesOV (the tiny backbone at 128 px); the
released OLN values (Kim et al. 2022, configs/oln_box/oln_box.py of the released code) are cited beside each field
and are the values of the ResNet-50 FPN presets, configs/ov_coco/proposer.yaml and configs/ov_lvis/proposer.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trainers.config import EvalConfig, TrainConfig

# centerness: OLN, objectness learned as localization quality (centerness in the RPN, IoU in the box head).
# classification: the standard Faster R-CNN objectness (foreground / background), torchvision's RPN and box head.
Objectness = Literal["centerness", "classification"]


@dataclass(frozen=True)
class ProposerDataConfig:
    """What the network trains on: one annotation file of base boxes and its images. Nothing else is read."""

    annotations: str = "data/shapes/annotations/train_base.json"  # COCO / LVIS instances file, base boxes only
    image_root: str = "data/shapes/images/train"  # where the file's image file names resolve
    # The OV split (`ov-coco`, `lvis-frequency` or a split file, pipelines/ov_split.py): an annotation of a novel
    # category refuses the file; annotations of categories in neither side are left out (strict OV setting).
    split: str = "data/shapes/ov_split.json"
    flip_probability: float = 0.5  # horizontal; OLN / mmdet RandomFlip flip_ratio 0.5
    # Vertical flips and transposition (OLN: none): with the horizontal flip, every rotation by 90° and mirror of
    # an image, so tips and corners of the base shapes point every way, as those of unseen shapes may.
    vertical_flip_probability: float = 0.0
    transpose_probability: float = 0.0

    def __post_init__(self) -> None:
        for name in ("flip_probability", "vertical_flip_probability", "transpose_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"proposer.data.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class ProposerNetworkConfig:
    """The two-stage proposal network (trainers/proposer/network.py). Defaults: the ShapesOV demo."""

    objectness: Objectness = "centerness"
    backbone: Literal["tiny", "resnet50"] = "tiny"  # key of trainers.modeling.backbones.BACKBONES
    backbone_weights: str | None = None  # local ImageNet checkpoint; None = random initialisation
    trainable_backbone_layers: int = 3  # OLN: frozen_stages=1, i.e. ResNet stages 2-4 train
    # Input size: shorter side to min_size, longer side at most max_size. OLN: (1333, 800).
    min_size: int = 128
    max_size: int = 128
    # --- RPN. OLN: one square anchor per location, 8 x stride (torchvision's ResNet-50 FPN anchor sizes, 32-512).
    # The tiny backbone's anchors are 4 x stride (trainers/modeling/backbones.py). The standard variant keeps
    # torchvision's three aspect ratios per location.
    rpn_batch_size_per_image: int = 256  # OLN / torchvision: 256 anchors sampled per image for box regression
    rpn_positive_fraction: float = 0.5
    rpn_fg_iou_thresh: float = 0.7  # OLN rpn assigner pos_iou_thr 0.7
    rpn_bg_iou_thresh: float = 0.3  # OLN rpn assigner neg_iou_thr 0.3
    # OLN's objectness assigner: anchors with IoU > 0.3 learn their centerness, anchors under 0.1 learn 0; 256 per
    # image, positives first (objectness_sampler pos_fraction 1.0, negatives fill what positives leave).
    centerness_fg_iou_thresh: float = 0.3
    centerness_bg_iou_thresh: float = 0.1
    centerness_batch_size_per_image: int = 256
    rpn_box_loss_weight: float = 10.0  # OLN: IoULoss(linear=True) on decoded boxes, loss_weight 10
    # Proposals passed from the RPN to the box head. OLN: 2000 before and after NMS, training and test; the demo
    # keeps 300 / 100 (the prototype's budget for 2 CPU cores, trainers/hdovd/config.py).
    rpn_pre_nms_top_n_train: int = 300
    rpn_post_nms_top_n_train: int = 100
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 100
    # OLN rpn_proposal nms_thr 0.7 in training; its test config skips the RPN's NMS (the box head's NMS follows),
    # which would send every anchor of the top-n to the box head: one threshold for both keeps that cost bounded.
    rpn_nms_thresh: float = 0.7
    # --- box head. OLN rcnn sampler: 512 RoIs per image, a quarter positive (IoU >= 0.5), ground truth added.
    box_batch_size_per_image: int = 64
    box_positive_fraction: float = 0.25
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    representation_size: int = 256  # OLN: Shared2FC, 1024
    roi_sampling_ratio: int = 1  # OLN: RoIAlign sampling_ratio 0 (adaptive); 1 halves the CPU cost (hdovd config)

    def __post_init__(self) -> None:
        for name in ("rpn_nms_thresh", "rpn_positive_fraction", "box_positive_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"proposer.network.{name} must be in (0, 1], got {getattr(self, name)}")
        if self.centerness_bg_iou_thresh > self.centerness_fg_iou_thresh:
            raise ValueError("proposer.network.centerness_bg_iou_thresh must not exceed centerness_fg_iou_thresh")


@dataclass(frozen=True)
class ProposalOutputConfig:
    """What the network hands out per image (training evaluation and the proposals stage alike)."""

    top_k: int = 100  # proposals kept per image, best first (AR@100 needs 100)
    nms_thresh: float = 0.7  # OLN test_cfg.rcnn nms iou_threshold 0.7, class-agnostic
    score_thresh: float = 0.0  # OLN test_cfg.rcnn score_thr 0.0
    batch_size: int = 16  # images per forward

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"proposer.output.top_k must be >= 1, got {self.top_k}")
        if not 0.0 < self.nms_thresh <= 1.0:
            raise ValueError(f"proposer.output.nms_thresh must be in (0, 1] (1 = no NMS), got {self.nms_thresh}")


@dataclass(frozen=True)
class ProposerConfig:
    """The proposal network's section of a run (`--set proposer.network.objectness=classification`); a
    checkpoint carries it, and the proposals job rebuilds the network from it."""

    data: ProposerDataConfig = field(default_factory=ProposerDataConfig)
    network: ProposerNetworkConfig = field(default_factory=ProposerNetworkConfig)
    output: ProposalOutputConfig = field(default_factory=ProposalOutputConfig)


@dataclass(frozen=True)
class ProposalRecallEvalConfig(EvalConfig):
    """Average recall of the trained network (pipelines/proposal_recall.py) over the images of `base_annotations`.

    Base recall counts the base boxes of `base_annotations`; novel recall counts the novel boxes of
    `novel_annotations`, a held-out file read by this evaluation only (None: no novel recall)."""

    base_annotations: str | None = None  # None: proposer.data.annotations (recall on the training images)
    image_root: str | None = None  # None: proposer.data.image_root
    novel_annotations: str | None = "data/shapes/annotations/train_novel_heldout.json"
    max_dets: tuple[int, ...] = (5, 10, 100)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.max_dets or min(self.max_dets) < 1:
            raise ValueError(f"eval.max_dets must list proposal budgets >= 1, got {self.max_dets}")


@dataclass(frozen=True)
class ProposerRunConfig(TrainConfig):
    """A proposal-network run: the engine's keys, the `proposer` section and its recall evaluation. `batch_size`
    is images per micro-batch and process (OLN: 2 per GPU x 8 GPUs); `num_workers` decode the images."""

    method: Literal["proposer"] = "proposer"
    out_dir: str = "runs/proposer"
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    eval: ProposalRecallEvalConfig = field(default_factory=ProposalRecallEvalConfig)
