"""Multi-scale deformable cross-attention (Deformable DETR, Zhu et al. 2021, eq. 3), in plain PyTorch.

Each query samples a few points per head and per feature level around its reference box, and sums them with
weights it predicts itself. Open-Det's decoder and VLD-M attend this way (Sec. 3.2, 3.4). Compared with global
attention over every token, a query sees its own box from the first step, which is what lets a small detector tell
shapes apart after a CPU-sized schedule.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def split_levels(tokens: Tensor, level_shapes: list[tuple[int, int]]) -> list[Tensor]:
    """(B, T, d) tokens of all levels, row-major per level → per level (B, d, h, w)."""
    maps, start = [], 0
    for height, width in level_shapes:
        level = tokens[:, start:start + height * width]
        maps.append(level.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width))
        start += height * width
    return maps


class DeformableCrossAttention(nn.Module):
    """queries (B, Q, d) with reference boxes (B, Q, 4) cxcywh in [0, 1] attend to value tokens (B, T, d).

    Sampling offsets are relative to the reference box's size (Deformable DETR's two-stage / box-refinement form):
    location = centre + offset · (w, h) / 2 with the offsets at initialisation on a ring around the centre.
    """

    def __init__(self, dim: int, heads: int, levels: int, points: int):
        super().__init__()
        self.heads, self.levels, self.points = heads, levels, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_projection = nn.Linear(dim, dim)
        self.output_projection = nn.Linear(dim, dim)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Deformable DETR's initialisation: head h starts looking in direction 2πh/heads, point k at distance k;
        # equal attention weights at first.
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        grid = directions.view(self.heads, 1, 1, 2).repeat(1, self.levels, self.points, 1)
        grid *= torch.arange(1, self.points + 1, dtype=torch.float32).view(1, 1, -1, 1) / self.points
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_projection.weight)
        nn.init.zeros_(self.value_projection.bias)
        nn.init.xavier_uniform_(self.output_projection.weight)
        nn.init.zeros_(self.output_projection.bias)

    def forward(self, queries: Tensor, reference: Tensor, values: Tensor, level_shapes: list[tuple[int, int]],
                value_padding: Tensor | None = None) -> Tensor:
        """queries: (B, Q, d) (position already added); reference: (B, Q, 4); values: (B, T, d) → (B, Q, d).
        value_padding: (B, T) bool, tokens read as zero (Deformable DETR's MSDeformAttn input_padding_mask)."""
        batch, num_queries, dim = queries.shape
        heads, levels, points = self.heads, self.levels, self.points
        offsets = self.sampling_offsets(queries).view(batch, num_queries, heads, levels, points, 2)
        centre, size = reference[:, :, None, None, None, :2], reference[:, :, None, None, None, 2:]
        locations = centre + offsets * size / 2  # (B, Q, H, L, P, 2) in [0, 1] image coordinates
        weights = self.attention_weights(queries).view(batch, num_queries, heads, levels * points).softmax(-1)
        head_dim = dim // heads
        projected = self.value_projection(values)
        if value_padding is not None:
            projected = projected.masked_fill(value_padding[..., None], 0.0)
        value_maps = split_levels(projected, level_shapes)
        sampled = []
        for level, value_map in enumerate(value_maps):
            height, width = level_shapes[level]
            per_head = value_map.reshape(batch * heads, head_dim, height, width)
            grid = locations[:, :, :, level].permute(0, 2, 1, 3, 4).reshape(batch * heads, num_queries, points, 2)
            # grid_sample's [-1, 1] spans the outer pixel edges with align_corners=False, as [0, 1] does here.
            sampled.append(F.grid_sample(per_head, grid * 2 - 1, mode="bilinear", padding_mode="zeros",
                                         align_corners=False))  # (B·H, head_dim, Q, P)
        sampled = torch.cat(sampled, dim=-1)  # (B·H, head_dim, Q, L·P)
        weights = weights.permute(0, 2, 1, 3).reshape(batch * heads, 1, num_queries, levels * points)
        attended = (sampled * weights).sum(-1).view(batch, heads * head_dim, num_queries).transpose(1, 2)
        return self.output_projection(attended)
