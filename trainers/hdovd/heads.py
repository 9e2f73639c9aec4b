"""Heads that turn detector features into CLIP-space queries and text-embedding classifiers (HD-OVD Sec. III)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align


class RegionQueryHead(nn.Module):
    """Box-head features → class-agnostic box deltas, distilled query q and text-space query q̂.

    HD-OVD Sec. IV-B: for Faster R-CNN the RoI features play the role of object queries. q is projected to the CLIP
    dimension (Sec. III-B); q̂ = MLP(q) separates the text space from the distillation space (Sec. III-C). The MLP is
    residual (D → 2D → D) as in the released code, so q̂ starts close to q.
    """

    def __init__(self, in_features: int, embed_dim: int):
        super().__init__()
        self.box_deltas = nn.Linear(in_features, 4)  # class-agnostic regression: one box per RoI
        self.query_projection = nn.Linear(in_features, embed_dim)
        self.text_mlp = nn.Sequential(nn.Linear(embed_dim, 2 * embed_dim), nn.ReLU(), nn.Linear(2 * embed_dim, embed_dim))
        # torchvision FastRCNNPredictor-style init: small regression outputs at the start.
        nn.init.normal_(self.box_deltas.weight, std=0.001)
        nn.init.zeros_(self.box_deltas.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """features: (N, F) float → box_deltas (N, 4), queries q (N, D) as projected (the distilled query of a box
        averages them before normalising, as the released head does), text_queries q̂ (N, D) L2-normalised."""
        projected = self.query_projection(features)
        text_projected = projected + self.text_mlp(projected)
        return self.box_deltas(features), projected, F.normalize(text_projected, dim=-1)


class SigmoidCosineClassifier(nn.Module):
    """p_ij = sigmoid(cos(q̂_i, e_j)·τ_cls) (HD-OVD eq. 4); background is "no class fires"."""

    def __init__(self, embed_dim: int, tau: float):
        super().__init__()
        self.tau = tau

    def forward(self, text_queries: Tensor, class_embeddings: Tensor) -> tuple[Tensor, Tensor | None]:
        """text_queries: (N, D), class_embeddings: (C, D), both L2-normalised → logits (N, C), None."""
        return text_queries @ class_embeddings.t() * self.tau, None

    def probabilities(self, logits: Tensor, background_logits: Tensor | None) -> Tensor:
        """(N, C) logits → (N, C) probabilities in [0, 1]."""
        return torch.sigmoid(logits)

    def background_probabilities(self, logits: Tensor, background_logits: Tensor | None) -> Tensor | None:
        """The background column's probability (N,), or None: a sigmoid classifier has no such column."""
        return None


class SoftmaxBackgroundClassifier(SigmoidCosineClassifier):
    """Softmax over [classes, learnable background embedding] at τ_cls (HD-OVD released code)."""

    def __init__(self, embed_dim: int, tau: float):
        super().__init__(embed_dim, tau)
        self.background = nn.Parameter(torch.randn(embed_dim) / embed_dim**0.5)

    def forward(self, text_queries: Tensor, class_embeddings: Tensor) -> tuple[Tensor, Tensor | None]:
        """→ logits (N, C) and background logits (N,)."""
        background = F.normalize(self.background, dim=0)
        return text_queries @ class_embeddings.t() * self.tau, text_queries @ background * self.tau

    def probabilities(self, logits: Tensor, background_logits: Tensor | None) -> Tensor:
        """(N, C) class probabilities; the background column takes the rest of the mass."""
        return torch.softmax(torch.cat([logits, background_logits[:, None]], dim=1), dim=1)[:, :-1]

    def background_probabilities(self, logits: Tensor, background_logits: Tensor | None) -> Tensor | None:
        return torch.softmax(torch.cat([logits, background_logits[:, None]], dim=1), dim=1)[:, -1]


# By DetectorConfig.classifier.
CLASSIFIERS: dict[str, Callable[[int, float], SigmoidCosineClassifier]] = {
    "sigmoid": SigmoidCosineClassifier,
    "softmax_background": SoftmaxBackgroundClassifier,
}


class ImageQueryHead(nn.Module):
    """Global image embedding of the detector (HD-OVD eq. 6–7), projected to the CLIP dimension.

    Eq. 6 averages the FPN levels after interpolating them to one size (here the coarsest pooled level, as the
    released code does); eq. 7 average-pools. The pooling is a RoIAlign of the whole image box, so the padding
    that batching adds to smaller images does not dilute their mean. LayerNorm before the projection follows the
    released code.
    """

    POOLED_SIZE = 7  # RoIAlign grid of the image box (released code: 7 × 7)

    def __init__(self, in_channels: int, embed_dim: int, feature_names: tuple[str, ...]):
        super().__init__()
        self.feature_names = feature_names
        self.norm = nn.LayerNorm(in_channels)
        self.projection = nn.Linear(in_channels, embed_dim)

    def forward(self, features: dict[str, Tensor], image_sizes: list[tuple[int, int]], padded_height: int) -> Tensor:
        """features: name → (B, C, H_l, W_l); image_sizes: B × (h, w) unpadded input sizes; padded_height: H of
        the batched input. Returns (B, D) float, L2-normalised."""
        levels = [features[name] for name in self.feature_names]
        target_size = levels[-1].shape[-2:]
        fused = torch.stack([F.interpolate(level, size=target_size, mode="bilinear", align_corners=False)
                             for level in levels]).mean(dim=0)
        boxes = torch.tensor([[index, 0.0, 0.0, float(w), float(h)] for index, (h, w) in enumerate(image_sizes)],
                             dtype=fused.dtype, device=fused.device)
        pooled = roi_align(fused, boxes, self.POOLED_SIZE, spatial_scale=target_size[0] / padded_height,
                           sampling_ratio=2, aligned=True)
        global_features = pooled.mean(dim=(2, 3))
        return F.normalize(self.projection(self.norm(global_features)), dim=-1)
