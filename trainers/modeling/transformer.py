"""Transformer pieces of the query detector: sine position embeddings, encoder, Open-Det's decoder layers."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trainers.modeling.deformable import DeformableCrossAttention


def sine_embedding(coordinates: Tensor, dim_per_coordinate: int, temperature: float = 10000.0) -> Tensor:
    """(..., k) coordinates in [0, 1] → (..., k · dim_per_coordinate) sin/cos features (DETR / DAB-DETR)."""
    half = dim_per_coordinate // 2
    frequencies = temperature ** (torch.arange(half, device=coordinates.device, dtype=torch.float32) / half)
    angles = coordinates.float().unsqueeze(-1) * 2 * math.pi / frequencies  # (..., k, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class MLP(nn.Module):
    """Linear layers with ReLU between them (DETR's box head)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x) if index == len(self.layers) - 1 else torch.relu(layer(x))
        return x


@dataclass(frozen=True)
class TokenLayout:
    """Where the memory tokens come from: reference boxes (B, Q, 4) cxcywh in [0, 1] of the queries, the (h, w) of
    each feature level the tokens were flattened from (row-major, level after level), and which tokens are padding
    ((B, T) bool, None = none): attention reads them as nothing."""

    reference: Tensor
    level_shapes: list[tuple[int, int]]
    padding: Tensor | None = None


class CrossAttentionBlock(nn.Module):
    """Queries (+ position) attend to memory, residual + LayerNorm, then an FFN.

    `sampling_points` > 0: deformable attention around each query's reference box (`levels` feature levels);
    0: global attention over every memory token (+ its position)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, levels: int = 1, sampling_points: int = 0):
        super().__init__()
        self.attention = (DeformableCrossAttention(dim, heads, levels, sampling_points) if sampling_points
                          else nn.MultiheadAttention(dim, heads, batch_first=True))
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, queries: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor,
                layout: TokenLayout | None = None) -> Tensor:
        """queries, query_pos: (B, Q, d); memory, memory_pos: (B, T, d) → (B, Q, d). Deformable attention needs
        `layout`; its padding tokens are zero values there (MSDeformAttn) and masked keys in global attention."""
        padding = layout.padding if layout is not None else None
        if isinstance(self.attention, DeformableCrossAttention):
            if layout is None:
                raise ValueError("deformable cross-attention needs the queries' reference boxes and level shapes")
            attended = self.attention(queries + query_pos, layout.reference, memory, layout.level_shapes, padding)
        else:
            attended, _ = self.attention(queries + query_pos, memory + memory_pos, memory, key_padding_mask=padding,
                                         need_weights=False)
        queries = self.norm(queries + attended)
        return self.ffn_norm(queries + self.ffn(queries))


class DecoderLayer(nn.Module):
    """Open-Det Sec. 3.2: one-to-many layers use cross-attention only; the one-to-one layers add self-attention,
    through which queries see each other and can suppress duplicates."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, self_attention: bool, levels: int = 1,
                 sampling_points: int = 0):
        super().__init__()
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True) if self_attention else None
        self.self_norm = nn.LayerNorm(dim) if self_attention else None
        self.cross = CrossAttentionBlock(dim, heads, ffn_dim, levels, sampling_points)

    def forward(self, queries: Tensor, query_pos: Tensor, padding: Tensor, memory: Tensor, memory_pos: Tensor,
                layout: TokenLayout | None = None) -> Tensor:
        """queries, query_pos: (B, Q, d); padding: (B, Q) bool, True = no query here; memory(_pos): (B, T, d)."""
        if self.self_attention is not None:
            q = queries + query_pos
            attended, _ = self.self_attention(q, q, queries, key_padding_mask=padding, need_weights=False)
            queries = self.self_norm(queries + attended)
        return self.cross(queries, query_pos, memory, memory_pos, layout)


def build_encoder(dim: int, heads: int, ffn_dim: int, num_layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
