"""VLD-M, the Vision-to-Language Distillation Module (Open-Det Sec. 3.4, Fig. 3): queries → VL-prompts.

A query looks again at the backbone tokens and at the encoder tokens around its box (deformable cross-attention, as
the paper; global attention with box positions when `detector.sampling_points` is 0), an FFN re-weights each result, and the original
and both refined queries are lifted to the text width by two-layer MLPs and fused by one linear layer.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from trainers.modeling.transformer import MLP, CrossAttentionBlock, TokenLayout, sine_embedding


class PromptDistiller(nn.Module):
    def __init__(self, query_dim: int, text_dim: int, heads: int, ffn_dim: int, levels: int = 1,
                 sampling_points: int = 0):
        super().__init__()
        self.query_dim = query_dim
        self.box_pos = MLP(query_dim, query_dim, query_dim, 2)
        self.backbone_attention = CrossAttentionBlock(query_dim, heads, ffn_dim, levels, sampling_points)
        self.encoder_attention = CrossAttentionBlock(query_dim, heads, ffn_dim, levels, sampling_points)
        # Sec. 3.4: "MLP layers — two linear layers and an activation layer" per query version, then a linear fusion.
        self.lift = nn.ModuleList(MLP(query_dim, text_dim, text_dim, 2) for _ in range(3))
        self.fuse = nn.Linear(3 * text_dim, text_dim)

    def forward(self, queries: Tensor, boxes: Tensor, backbone_tokens: Tensor, memory: Tensor, token_pos: Tensor,
                level_shapes: list[tuple[int, int]]) -> Tensor:
        """queries: (B, Q, d); boxes: (B, Q, 4) cxcywh in [0, 1]; backbone_tokens, memory, token_pos: (B, T, d);
        level_shapes: (h, w) per feature level in token order → VL-prompts z: (B, Q, Dt) float."""
        query_pos = self.box_pos(sine_embedding(boxes.detach(), self.query_dim // 4))
        layout = TokenLayout(boxes.detach(), level_shapes)
        from_backbone = self.backbone_attention(queries, query_pos, backbone_tokens, token_pos, layout)
        from_encoder = self.encoder_attention(queries, query_pos, memory, token_pos, layout)
        lifted = [lift(version) for lift, version in zip(self.lift, (queries, from_backbone, from_encoder))]
        return self.fuse(torch.cat(lifted, dim=-1))
