"""A lean DETR-like detector (Open-Det Sec. 3.2): CNN + FPN tokens, transformer encoder, threshold query selection
from the encoder tokens, and a decoder whose first layers match one-to-many and last layers one-to-one. Open-Det
trains it with its language parts; its sizes are one config, QueryDetectorConfig.

Boxes are (cx, cy, w, h) in [0, 1] of each image's box frame (DETR's convention). With the `letterbox` resize (the
default) the image keeps its aspect ratio, scaled so its longer side fills the square and padded below and to the
right, and the frame is a square of the longer side's length from the image's top-left corner; with `square` the
frame is the image itself, stretched to the square (shapes change their aspect ratio with the image's).

Padding (letterbox): as the released Open-Det2 code passes its `mask_flatten` (qfree_det/deformable_transformer_qfree.py
DeformableTransformer.forward), the tokens of padded pixels are masked: the encoder's attention skips them as keys,
deformable attention reads them as zero values (MSDeformAttn's input_padding_mask), and they never become queries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.modeling.backbones import build_backbone
from trainers.modeling.transformer import MLP, DecoderLayer, TokenLayout, build_encoder, sine_embedding

# ImageNet statistics, as torchvision's detection transform normalises.
IMAGE_MEAN, IMAGE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def freeze_unread_fpn_levels(backbone: nn.Module, feature_maps: tuple[str, ...]) -> None:
    """The FPN's lateral and output convolutions of a level whose map is not read as tokens never touch the loss
    (the top-down path flows from coarse to fine only): freeze them, so the optimizer and DistributedDataParallel
    see only parameters that get gradients. backbone: torchvision BackboneWithFPN, maps named "0", "1", …"""
    fpn = backbone.fpn
    for level, (lateral, output) in enumerate(zip(fpn.inner_blocks, fpn.layer_blocks)):
        if str(level) not in feature_maps:
            lateral.requires_grad_(False)
            output.requires_grad_(False)


@dataclass(frozen=True)
class QueryDetectorConfig:
    """The query detector's sizes (Open-Det Sec. 3.2). Defaults are the CPU demo detector (ShapesOV at 128 px on 2
    cores); the paper's detector has 6 decoder layers of 256-d queries (configs/vg/opendet.yaml). A method's section
    subclasses it to name its dotted section (SECTION) in errors."""

    SECTION: ClassVar[str] = "detector"

    backbone: Literal["tiny", "resnet50"] = "tiny"  # trainers.modeling.backbones.BACKBONES; FPN maps feed the encoder
    backbone_weights: str | None = None  # local ImageNet checkpoint (resnet50 only); None = random
    trainable_backbone_layers: int = 3
    feature_maps: tuple[str, ...] = ("1", "2")  # FPN maps as encoder tokens; tiny at 128 px: 16×16 + 8×8 tokens
    image_size: int = 128  # images become a square of this side (ShapesOV renders 128–256 px per side)
    # letterbox: the aspect ratio kept, the longer side scaled to `image_size` and the rest zero-padded and masked
    # (the released code's augmentations, ResizeShortestEdge or EfficientDetResizeCrop, and DETR's padded batches keep
    # it too); square: stretched to the square, so a shape's aspect ratio changes with its image's (docs/results.md, Open-Det).
    resize: Literal["square", "letterbox"] = "letterbox"
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
        section = self.SECTION
        if not 1 <= self.one_to_one_layers <= self.decoder_layers:
            raise ValueError(f"{section}.one_to_one_layers={self.one_to_one_layers} must be in [1, "
                             f"{section}.decoder_layers={self.decoder_layers}]")
        if not 1 <= self.min_queries <= self.max_queries:
            raise ValueError(f"{section}.min_queries={self.min_queries} must be in [1, "
                             f"{section}.max_queries={self.max_queries}]")
        if self.sampling_points < 0:
            raise ValueError(f"{section}.sampling_points={self.sampling_points} must be >= 0 (0 = global attention)")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"{section}.hidden_dim={self.hidden_dim} must divide by "
                             f"{section}.num_heads={self.num_heads}")


@dataclass
class DecoderLayerOutput:
    """boxes: (B, Q, 4) float cxcywh in [0, 1]. binary_logits: (B, Q) float, objectness. queries: (B, Q, d)."""

    boxes: Tensor
    binary_logits: Tensor
    queries: Tensor
    one_to_one: bool  # matched one-to-one (the last layers) or one-to-many


@dataclass
class QueryDetectorOutput:
    """Everything the Open-Det criterion and VLD-M read. T = encoder tokens, Q = selected queries (padded).

    padding: (B, Q) bool, True where an image has fewer queries than the batch's widest.
    proposals: the selected encoder tokens as proposals (the released code's `interm_outputs`): their boxes (B, Q,
        4) and objectness (B, Q), from which the decoder starts, and their encoder output (B, Q, d) as `queries`.
    backbone_tokens, memory, token_pos: (B, T, d) float, FPN tokens (projected), encoder output, positions.
    token_padding: (B, T) bool, True for the tokens of padded pixels (letterbox), or None when no image is padded.
    level_shapes: (h, w) of each feature level, in token order.
    image_sizes: B × (height, width) of the input images in pixels.
    box_frames: B × (height, width) in pixels of what the normalised boxes are fractions of (`box_frame`).
    """

    layers: list[DecoderLayerOutput]
    padding: Tensor
    proposals: DecoderLayerOutput
    backbone_tokens: Tensor
    memory: Tensor
    token_pos: Tensor
    token_padding: Tensor | None
    level_shapes: list[tuple[int, int]]
    image_sizes: list[tuple[int, int]]
    box_frames: list[tuple[int, int]]

    def layout(self, reference: Tensor) -> TokenLayout:
        """The memory's layout for queries whose reference boxes are `reference` (B, Q, 4)."""
        return TokenLayout(reference, self.level_shapes, self.token_padding)


RESIZES = ("square", "letterbox")


def box_frame(height: int, width: int, resize: str) -> tuple[int, int]:
    """(height, width) in pixels that normalised boxes are fractions of: the image under `square`; under
    `letterbox` a square of the longer side (the image sits at its top-left, the rest is padding)."""
    if resize == "letterbox":
        side = max(height, width)
        return side, side
    return height, width


class QueryDetector(nn.Module):
    def __init__(self, config: QueryDetectorConfig = QueryDetectorConfig()):
        super().__init__()
        section = config.SECTION
        if config.resize not in RESIZES:
            raise ValueError(f"{section}.resize={config.resize!r} is unknown; choose one of {list(RESIZES)}")
        self.resize = config.resize
        self.feature_maps = tuple(config.feature_maps)
        self.image_size = config.image_size
        self.hidden_dim = dim = config.hidden_dim
        self.selection_threshold = config.selection_threshold
        self.min_queries, self.max_queries = config.min_queries, config.max_queries
        self.anchor_scale = config.anchor_scale
        spec = build_backbone(config.backbone, config.backbone_weights, config.trainable_backbone_layers, section)
        self.backbone = spec.module
        freeze_unread_fpn_levels(self.backbone, self.feature_maps)
        self.input_projection = nn.Linear(spec.out_channels, dim)
        self.level_embedding = nn.Parameter(torch.zeros(len(self.feature_maps), dim))
        self.encoder = build_encoder(dim, config.num_heads, config.ffn_dim, config.encoder_layers)
        self.encoder_score_head = nn.Linear(dim, 1)
        self.encoder_box_head = MLP(dim, dim, 4, 3)
        self.query_content = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.reference_pos = MLP(dim, dim, dim, 2)  # sine(box) → query position (DAB-DETR)
        first_one_to_one = config.decoder_layers - config.one_to_one_layers
        levels = len(self.feature_maps)
        self.decoder = nn.ModuleList(DecoderLayer(dim, config.num_heads, config.ffn_dim, index >= first_one_to_one,
                                                  levels, config.sampling_points)
                                     for index in range(config.decoder_layers))
        self.box_head = MLP(dim, dim, 4, 3)
        self.binary_head = nn.Linear(dim, 1)
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def tokens(self, images: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, list[tuple[int, int]], Tensor | None]:
        """B × (3, H, W) in [0, 1] → tokens (B, T, d), positions (B, T, d), anchors (B, T, 4) cxcywh, the (h, w) of
        each level, and the tokens' padding (B, T) bool (None when no image is padded)."""
        inputs, pixel_padding = zip(*(self.square_input(image) for image in images))
        maps = self.backbone(torch.stack(inputs))
        pixel_padding = torch.stack(pixel_padding)
        tokens, positions, anchors, shapes, padding = [], [], [], [], []
        for level, name in enumerate(self.feature_maps):
            feature = maps[name]  # (B, C, h, w)
            batch_size, _, height, width = feature.shape
            shapes.append((height, width))
            ys, xs = torch.meshgrid(torch.arange(height, device=feature.device),
                                    torch.arange(width, device=feature.device), indexing="ij")
            centres = torch.stack([(xs + 0.5) / width, (ys + 0.5) / height], dim=-1).reshape(-1, 2).float()
            side = torch.full_like(centres, self.anchor_scale * 2.0**level)
            tokens.append(self.input_projection(feature.flatten(2).transpose(1, 2)))
            position = sine_embedding(centres, self.hidden_dim // 2) + self.level_embedding[level]
            positions.append(position.expand(batch_size, -1, -1))
            anchors.append(torch.cat([centres, side], dim=-1).expand(batch_size, -1, -1))
            # DETR's backbone mask: the pixel mask resized to the level by nearest neighbour.
            padding.append(F.interpolate(pixel_padding[:, None].float(), size=(height, width))[:, 0].bool().flatten(1))
        token_padding = torch.cat(padding, 1)
        return (torch.cat(tokens, 1), torch.cat(positions, 1), torch.cat(anchors, 1), shapes,
                token_padding if token_padding.any() else None)

    def square_input(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(3, H, W) in [0, 1] → (3, S, S) normalised with ImageNet statistics, S = `image_size`: stretched, or
        (letterbox) scaled by S / max(H, W) and zero-padded after normalising, as DETR pads its batches; and (S, S)
        bool, True on padded pixels."""
        size = self.image_size
        height, width = image.shape[-2:]
        if self.resize == "square":
            target = (size, size)
        else:
            scale = size / max(height, width)
            target = (max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale))))
        resized = F.interpolate(image[None], size=target, mode="bilinear", align_corners=False)[0]
        normalised = (resized - self.image_mean[0]) / self.image_std[0]
        padding = torch.ones(size, size, dtype=torch.bool, device=image.device)
        padding[:target[0], :target[1]] = False
        return F.pad(normalised, (0, size - target[1], 0, size - target[0])), padding

    def select_queries(self, encoder_logits: Tensor, token_padding: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Open-Det eq. 1: tokens with σ(score) > threshold, per image, bounded by [min_queries, max_queries]; a
        padded token (token_padding True) is never selected.

        encoder_logits: (B, T) → indices (B, Q) int64 (best first) and padding (B, Q) bool."""
        logits = encoder_logits.detach()
        valid = torch.full_like(logits[:, 0], logits.shape[1], dtype=torch.long)
        if token_padding is not None:
            logits = logits.masked_fill(token_padding, float("-inf"))
            valid = (~token_padding).sum(dim=1)
        counts = (logits.sigmoid() > self.selection_threshold).sum(dim=1)
        counts = torch.maximum(counts, valid.clamp(max=self.min_queries)).clamp(max=self.max_queries)
        width = int(counts.max())
        indices = logits.topk(width, dim=1).indices
        padding = torch.arange(width, device=counts.device)[None] >= counts[:, None]
        return indices, padding

    def forward(self, images: list[Tensor]) -> QueryDetectorOutput:
        """images: B × (3, H, W) float in [0, 1]."""
        backbone_tokens, token_pos, anchors, level_shapes, token_padding = self.tokens(images)
        memory = self.encoder(backbone_tokens + token_pos, src_key_padding_mask=token_padding)
        encoder_logits = self.encoder_score_head(memory).squeeze(-1)
        encoder_boxes = (inverse_sigmoid(anchors) + self.encoder_box_head(memory)).sigmoid()
        indices, padding = self.select_queries(encoder_logits, token_padding)
        gather = indices.unsqueeze(-1)
        selected = memory.gather(1, gather.expand(-1, -1, memory.shape[-1]))
        proposals = DecoderLayerOutput(encoder_boxes.gather(1, gather.expand(-1, -1, 4)),
                                       encoder_logits.gather(1, indices), selected, one_to_one=True)
        queries = self.query_content(selected)
        # The encoder's proposals become the first reference boxes, detached as in two-stage Deformable DETR.
        reference = proposals.boxes.detach()
        layers = []
        for layer in self.decoder:
            query_pos = self.reference_pos(sine_embedding(reference, self.hidden_dim // 4))
            queries = layer(queries, query_pos, padding, memory, token_pos,
                            TokenLayout(reference, level_shapes, token_padding))
            boxes = (inverse_sigmoid(reference) + self.box_head(queries)).sigmoid()
            layers.append(DecoderLayerOutput(boxes, self.binary_head(queries).squeeze(-1), queries,
                                             one_to_one=layer.self_attention is not None))
            reference = boxes.detach()  # each layer refines the previous layer's boxes (iterative refinement)
        sizes = [tuple(image.shape[-2:]) for image in images]
        return QueryDetectorOutput(layers, padding, proposals, backbone_tokens, memory, token_pos, token_padding,
                                   level_shapes, sizes, [box_frame(h, w, self.resize) for h, w in sizes])
