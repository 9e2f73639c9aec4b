"""Backbones with FPN, by name. Each builder returns the module plus what the detector needs to know about it.

Builders take explicit arguments (pretrained weights, trainable stages); `config_section` is only the dotted config
section their error messages name (e.g. `hdovd.detector`), so a user knows which key to change.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from safetensors.torch import load_file
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.ops import misc as misc_ops

from vlm.tensor_files import load_tensor_file

log = logging.getLogger(__name__)
# A backbone_weights value meaning "built as pretrained, its weights come from a checkpoint loaded next": an
# evaluation of a trained detector needs the pretrained structure (frozen batch norm) but not the ImageNet file.
WEIGHTS_FROM_CHECKPOINT = "<weights from the checkpoint>"


@dataclass(frozen=True)
class BackboneSpec:
    """module: image batch (B, 3, H, W) → OrderedDict of FPN maps (B, out_channels, H_l, W_l).
    anchor_sizes: one tuple of anchor sizes (pixels) per FPN map, in the module's output order.
    roi_feature_names: the maps RoIAlign pools from (the max-pool level is for the RPN only)."""

    module: nn.Module
    out_channels: int
    anchor_sizes: tuple[tuple[int, ...], ...]
    roi_feature_names: tuple[str, ...]


def load_state_dict_file(path: str, config_key: str) -> dict[str, Tensor]:
    """A local checkpoint as a state dict: safetensors, or a tensors-only torch file (`weights_only=True`)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint not found: {file} (config key {config_key}); "
                                "weights are never downloaded, give a local file")
    if file.suffix == ".safetensors":
        return load_file(str(file))
    state = load_tensor_file(file, f"config key {config_key}")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # checkpoints saved as {"state_dict": ...}
    if not isinstance(state, dict):
        raise ValueError(f"{file} (config key {config_key}) does not hold a state dict")
    return state


class _ConvBlock(nn.Sequential):
    """Two 3×3 convolutions, the first with stride 2; GroupNorm because CPU batches hold 2–4 images."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
            nn.GroupNorm(8, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(8, out_channels),
            nn.ReLU(inplace=True),
        )


def _tiny_body(widths: tuple[int, ...]) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=_ConvBlock(3, widths[0]))  # stride 2
    in_widths = (widths[0],) + widths[:-1]
    for index, (in_width, width) in enumerate(zip(in_widths, widths)):
        layers[f"block{index + 1}"] = _ConvBlock(in_width, width)  # strides 4, 8, 16
    return nn.Sequential(layers)


def build_tiny(weights: str | None, trainable_layers: int, config_section: str) -> BackboneSpec:
    """Stem + 3 conv blocks at strides 4 / 8 / 16 (32, 16, 8 cells at 128 px) and a 64-channel FPN.

    Sized for the ShapesOV demo on 2 CPU cores (DESIGN: a 3-block conv backbone at 128 px); never pretrained, so
    every stage trains whatever `trainable_layers` says.
    """
    del trainable_layers
    if weights is not None:
        raise ValueError(f"{config_section}.backbone_weights is set, but backbone=tiny has no pretrained weights")
    widths = (32, 64, 128)
    fpn_channels = 64
    body = _tiny_body(widths)
    module = BackboneWithFPN(body, {"block1": "0", "block2": "1", "block3": "2"}, list(widths), fpn_channels)
    # One anchor size per map (3 FPN levels + max-pool level); shapes in the demo span about 12–80 px.
    return BackboneSpec(module, fpn_channels, ((16,), (32,), (64,), (128,)), ("0", "1", "2"))


_RESNET_FC_KEYS = {"fc.weight", "fc.bias"}


def build_resnet50(weights: str | None, trainable_layers: int, config_section: str) -> BackboneSpec:
    """torchvision ResNet-50 + FPN (256 channels), ImageNet weights from the local file `weights` if given.

    Pretrained: FrozenBatchNorm and `trainable_layers` trainable stages (torchvision's fine-tuning recipe).
    From scratch: ordinary BatchNorm and every stage trainable, since frozen random statistics would be meaningless.
    """
    key = f"{config_section}.backbone_weights"
    pretrained = weights is not None
    # Read the checkpoint first: a wrong path fails before the model is built.
    state = load_state_dict_file(weights, key) if pretrained and weights != WEIGHTS_FROM_CHECKPOINT else None
    module = resnet_fpn_backbone(
        backbone_name="resnet50",
        weights=None,
        norm_layer=misc_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d,
        trainable_layers=trainable_layers if pretrained else 5,
    )
    if state is not None:
        result = module.body.load_state_dict(state, strict=False)
        unexpected = set(result.unexpected_keys) - _RESNET_FC_KEYS
        if result.missing_keys or unexpected:
            raise ValueError(f"{weights} ({key}) is not a torchvision ResNet-50 state dict: "
                             f"missing {sorted(result.missing_keys)[:5]}, unexpected {sorted(unexpected)[:5]}")
    elif not pretrained:
        log.warning(f"{config_section}.backbone=resnet50 without {key}: training from random weights")
    # torchvision fasterrcnn_resnet50_fpn anchors: one size per level, 32–512 px.
    return BackboneSpec(module, 256, ((32,), (64,), (128,), (256,), (512,)), ("0", "1", "2", "3"))


# Builders by name: (weights, trainable_layers, config_section) → BackboneSpec.
BACKBONES: dict[str, Callable[[str | None, int, str], BackboneSpec]] = {
    "tiny": build_tiny,
    "resnet50": build_resnet50,
}


def build_backbone(name: str, weights: str | None = None, trainable_layers: int = 3,
                   config_section: str = "detector") -> BackboneSpec:
    """The backbone `name` (a key of BACKBONES) with FPN. weights: a local ImageNet checkpoint or None (random);
    trainable_layers: stages trained when pretrained (torchvision's default for ResNet-50 FPN: 3)."""
    if name not in BACKBONES:
        raise KeyError(f"{config_section}.backbone={name!r} is unknown; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name](weights, trainable_layers, config_section)
