"""VLD-M, the Vision-to-Language Distillation Module (Open-Det Sec. 3.4, Fig. 3): queries → VL-prompts.

A query looks again at the backbone tokens and at the encoder tokens around its box (deformable cross-attention, as
the paper; global attention with box positions when `detector.sampling_points` is 0), an FFN re-weights each result,
and the original and both refined queries are lifted to the text width and fused into one VL-prompt.

Two forms (`opendet.distiller.form`):
- released (Open-Det2 code): each version is lifted by `GatedProjection` — a 3-layer MLP (ReLU6, dropout 0.1) plus
  a gated identity path — and the three are fused by a bias-free linear layer; the prompts T5 reads pass dropout 0.3
  before the fusion, the ones VLD-M's loss compares do not (segmentation_condInst_new_encodfpn_3.py: DETRsegmVLUni's
  forward and l2_loss); the two refinements read the queries detached, so VLD-M's refinement does not pull on the
  decoder through them.
- paper: "MLP layers — two linear layers and an activation layer" per version, then a linear fusion.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.modeling.transformer import MLP, CrossAttentionBlock, TokenLayout, sine_embedding

# Released code (qfreeDet.MLP_Projection; segmentation_condInst_new_encodfpn_3.query_vis_fusion).
PROJECTION_DROPOUT = 0.1
FUSION_DROPOUT = 0.3


class GatedProjection(nn.Module):
    """x (..., d) → (..., Dt): MLP(x) + W_id x ⊙ σ(W_gate x), the MLP 3 layers deep with ReLU6 (released code's
    MLP_Projection, 256 → 2048 → 2048 → 768 there; `hidden_dim` here). W_id and W_gate have no bias."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = PROJECTION_DROPOUT):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(in_dim, hidden_dim), nn.Linear(hidden_dim, hidden_dim),
                                     nn.Linear(hidden_dim, out_dim)])
        self.identity = nn.Linear(in_dim, out_dim, bias=False)
        self.gate = nn.Linear(in_dim, out_dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        identity = self.identity(x) * torch.sigmoid(self.gate(x))
        hidden = x
        for layer in self.layers[:-1]:
            hidden = self.dropout(F.relu6(layer(hidden)))
        return self.dropout(self.layers[-1](hidden)) + identity


class PromptDistiller(nn.Module):
    def __init__(self, query_dim: int, text_dim: int, heads: int, ffn_dim: int, levels: int = 1,
                 sampling_points: int = 0, form: str = "released", hidden_dim: int | None = None):
        """form: "released" or "paper" (module docstring); hidden_dim: the released form's MLP width (default
        8 × query_dim, the released 2048 for 256-d queries)."""
        super().__init__()
        if form not in ("released", "paper"):
            raise ValueError(f"opendet.distiller.form must be released or paper, got {form!r}")
        self.query_dim = query_dim
        self.form = form
        self.box_pos = MLP(query_dim, query_dim, query_dim, 2)
        self.backbone_attention = CrossAttentionBlock(query_dim, heads, ffn_dim, levels, sampling_points)
        self.encoder_attention = CrossAttentionBlock(query_dim, heads, ffn_dim, levels, sampling_points)
        if form == "released":
            hidden = hidden_dim or 8 * query_dim
            self.lift = nn.ModuleList(GatedProjection(query_dim, hidden, text_dim) for _ in range(3))
            self.fuse = nn.Linear(3 * text_dim, text_dim, bias=False)
            self.fusion_dropout = nn.Dropout(FUSION_DROPOUT)
        else:
            self.lift = nn.ModuleList(MLP(query_dim, text_dim, text_dim, 2) for _ in range(3))
            self.fuse = nn.Linear(3 * text_dim, text_dim)
            self.fusion_dropout = nn.Identity()

    def refine(self, queries: Tensor, boxes: Tensor, backbone_tokens: Tensor, memory: Tensor, token_pos: Tensor,
               layout: TokenLayout) -> tuple[Tensor, Tensor, Tensor]:
        """The three versions of each query: itself, refined on the backbone tokens, refined on the encoder memory.
        queries: (B, Q, d); boxes: (B, Q, 4) cxcywh in [0, 1]; backbone_tokens, memory, token_pos: (B, T, d);
        layout: the memory's layout with `boxes` as reference."""
        query_pos = self.box_pos(sine_embedding(boxes.detach(), self.query_dim // 4))
        refine_from = queries.detach() if self.form == "released" else queries
        from_backbone = self.backbone_attention(refine_from, query_pos, backbone_tokens, token_pos, layout)
        from_encoder = self.encoder_attention(refine_from, query_pos, memory, token_pos, layout)
        return queries, from_backbone, from_encoder

    def fuse_versions(self, versions: tuple[Tensor, Tensor, Tensor], for_names: bool = False) -> Tensor:
        """The three versions (…, d) → VL-prompts z (…, Dt); `for_names`: the prompts T5 reads, which pass the
        released form's fusion dropout."""
        lifted = [lift(version) for lift, version in zip(self.lift, versions)]
        if for_names:
            lifted = [self.fusion_dropout(version) for version in lifted]
        return self.fuse(torch.cat(lifted, dim=-1))

    def forward(self, queries: Tensor, boxes: Tensor, backbone_tokens: Tensor, memory: Tensor, token_pos: Tensor,
                layout: TokenLayout, for_names: bool = False) -> Tensor:
        """→ VL-prompts z: (B, Q, Dt) float (refine, then fuse_versions)."""
        return self.fuse_versions(self.refine(queries, boxes, backbone_tokens, memory, token_pos, layout), for_names)
