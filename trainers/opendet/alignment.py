"""BVLA-M, the Bidirectional Vision-Language Alignment module (Open-Det Sec. 3.3, eq. 2), and the refinement the
released code gives the queries of the one-to-one layers before it scores them."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.modeling.transformer import CrossAttentionBlock, TokenLayout

# RetinaNet's prior (Lin et al. 2017, Sec. 4.1): focal-loss logits start at σ = 0.01, so the many negatives of a
# batch (queries × texts) do not swamp the first steps; Deformable DETR and GLIP initialise their heads the same way.
PRIOR_PROBABILITY = 0.01


class BidirectionalAlignment(nn.Module):
    """s(q, t) = cos(W_v q, t) + (W_i q)·(W_l t).

    V-to-L: W_v lifts the narrow query (e.g. 256-d) to the text width and compares by cosine. L-to-V: W_l brings the
    text down to the query width, W_i re-maps the query, and a dot product compares them. `bidirectional=False`
    keeps only the V-to-L cosine (Table 3 without BVLA-M: a query mapped up to the text space, as in GenerateU).
    The encoder's proposals are scored by a module of their own (the released `enc_vl_alignment`).
    A learnable scalar bias, initialised at the focal prior, is added to s (eq. 2 has none; see PRIOR_PROBABILITY).
    """

    def __init__(self, query_dim: int, text_dim: int, bidirectional: bool = True,
                 prior_probability: float = PRIOR_PROBABILITY):
        super().__init__()
        self.bidirectional = bidirectional
        self.bias = nn.Parameter(torch.tensor(-math.log((1 - prior_probability) / prior_probability)))
        self.vision_to_language = nn.Linear(query_dim, text_dim)  # W_v
        if bidirectional:
            self.query_map = nn.Linear(query_dim, query_dim)  # W_i
            self.language_to_vision = nn.Linear(text_dim, query_dim)  # W_l

    def forward(self, queries: Tensor, text_embeddings: Tensor) -> Tensor:
        """queries: (Nq, Dq) float; text_embeddings: (Nt, Dt) float → (Nq, Nt) float alignment logits."""
        lifted = F.normalize(self.vision_to_language(queries), dim=-1)
        scores = lifted @ F.normalize(text_embeddings, dim=-1).T
        if self.bidirectional:
            scores = scores + self.query_map(queries) @ self.language_to_vision(text_embeddings).T
        return scores + self.bias


class AlignedQueryRefiner(nn.Module):
    """One more look at the encoder memory for the queries BVLA-M scores (released code: `forward_dec` runs a
    `DecoderForGenerate` layer, deformable cross-attention around the layer's predicted boxes + FFN, on the last two
    decoder layers' queries before scoring them). One block per refined layer.

    Like the released layer, the attention query carries no position embedding: the box enters as the reference."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, levels: int, sampling_points: int, layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, heads, ffn_dim, levels, sampling_points)
                                    for _ in range(layers))

    def forward(self, block: int, queries: Tensor, memory: Tensor, token_pos: Tensor, layout: TokenLayout) -> Tensor:
        """queries: (B, Q, d); memory, token_pos: (B, T, d); layout: the memory's layout with that layer's boxes
        (detached) as reference → refined queries (B, Q, d)."""
        return self.blocks[block](queries, torch.zeros_like(queries), memory, token_pos, layout)
