"""The detector config. Defaults are the CPU demo detector; `RESNET50_FPN` is the real-data setting."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DetectorConfig:
    """Which detector (registry name), its backbone and sizes, and how it classifies."""

    name: str = "faster_rcnn"  # key of trainers.hdovd.detectors.DETECTORS
    backbone: str = "tiny"  # key of trainers.modeling.backbones.BACKBONES
    # Local ImageNet checkpoint of the backbone (.pth state dict or .safetensors); None = random initialisation.
    backbone_weights: str | None = None
    trainable_backbone_layers: int = 3  # torchvision's default for a pretrained ResNet-50 FPN
    embed_dim: int = 512  # CLIP ViT-B/32 embedding width (HD-OVD's teacher, Sec. IV-B)
    # `sigmoid` pairs with loss sigmoid_focal (eq. 4); `softmax_background` with weighted_softmax (released code).
    classifier: Literal["sigmoid", "softmax_background"] = "sigmoid"
    tau_cls: float = 50.0  # HD-OVD eq. 4: τ_cls = 50

    # Input size: shorter side to min_size, longer side at most max_size (torchvision GeneralizedRCNNTransform).
    min_size: int = 128  # ShapesOV demo renders at 128 px (DESIGN, embedded sample)
    max_size: int = 128
    # Proposal and RoI budget. The demo prototype: 100 post-NMS proposals and 64 sampled RoIs per image, a 256-d
    # box head (torchvision's 2000 / 512 / 1024 were ten times slower per step on 2 cores).
    rpn_pre_nms_top_n_train: int = 300
    rpn_post_nms_top_n_train: int = 100
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 100
    box_batch_size_per_image: int = 64
    box_positive_fraction: float = 0.25  # Faster R-CNN / torchvision default
    representation_size: int = 256
    # RoIAlign bilinear samples per bin side (torchvision's MultiScaleRoIAlign: 2). Its CPU backward was 36% of a
    # demo training step (py-spy); 1 sample per bin makes the pooling about 2x cheaper.
    roi_sampling_ratio: int = 2


# torchvision's fasterrcnn_resnet50_fpn settings (COCO / LVIS at 800 × 1333).
RESNET50_FPN = dataclasses.replace(
    DetectorConfig(),
    backbone="resnet50",
    min_size=800,
    max_size=1333,
    rpn_pre_nms_top_n_train=2000,
    rpn_post_nms_top_n_train=2000,
    rpn_pre_nms_top_n_test=1000,
    rpn_post_nms_top_n_test=1000,
    box_batch_size_per_image=512,
    representation_size=1024,
)
