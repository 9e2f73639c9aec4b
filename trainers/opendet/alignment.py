"""BVLA-M, the Bidirectional Vision-Language Alignment module (Open-Det Sec. 3.3, eq. 2)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BidirectionalAlignment(nn.Module):
    """s(q, t) = cos(W_v q, t) + (W_i q)·(W_l t).

    V-to-L: W_v lifts the narrow query (e.g. 256-d) to the text width and compares by cosine. L-to-V: W_l brings the
    text down to the query width, W_i re-maps the query, and a dot product compares them. `bidirectional=False`
    keeps only the V-to-L cosine (Table 3 without BVLA-M: a query mapped up to the text space, as in GenerateU).
    """

    def __init__(self, query_dim: int, text_dim: int, bidirectional: bool = True):
        super().__init__()
        self.bidirectional = bidirectional
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
        return scores
