"""How a pseudo box's stored score becomes the weight of its label in training (HD-OVD eq. 5; Open-Det pseudo names).

The pseudo-labels stage stores, per pseudo box, the CLIP cosine `cos` of its picked label and the released code's
score `s = sigmoid((cos − μ)/σ)·k` (pipelines.pseudo_label_pick.match_scores). Two weights can be read from them:

- `as_stored` (the released code's weight, the default): s itself. With HD-OVD's μ 0.31, σ 0.026, k 1.3, cosines
  0.20 … 0.40 give 0.019 … 1.260.
- `eq5` (the paper's printed form, α = σ(s) with s "the CLIP matching score after standardisation"): σ applied to
  the standardised cosine, (cos − μ)/σ, with the μ and σ the pseudo-labels stage used (its manifest summary records
  them). The same cosines give 0.014 … 0.969.

Applying σ to the stored s would squash it twice (0.505 … 0.779 for those cosines), so no option does that.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import Tensor

from featurestore.reader import StoreReader
from featurestore.stages import PSEUDO_LABELS as STAGE

TRANSFORMS = ("as_stored", "eq5")  # the values of hdovd.loss.pseudo_weight_transform


def score_statistics(store: str) -> tuple[float, float]:
    """(μ, σ) the store's pseudo-labels stage standardised cosines with (manifest: summary.score_mu_sigma)."""
    stage = StoreReader(store).manifest.stages.get(STAGE)
    summary = (stage.summary if stage else None) or {}
    pairs = summary.get("score_mu_sigma")
    if not pairs:
        raise ValueError(f"store {store} records no pseudo-labels score μ, σ (manifest stages.{STAGE}.summary."
                         "score_mu_sigma); run make pseudo-labels, or use pseudo_weight_transform=as_stored")
    if len(pairs) != 1:
        raise ValueError(f"store {store}: its pseudo-label shards were scored with different μ, σ {pairs}; rerun "
                         "make pseudo-labels with --overwrite, or use pseudo_weight_transform=as_stored")
    mu, sigma = pairs[0]
    return float(mu), float(sigma)


@dataclass(frozen=True)
class PseudoBoxWeighting:
    """scores, cosines (P,) float of pseudo boxes → (P,) float weights. mu, sigma: only read by `eq5`."""

    transform: str = "as_stored"
    mu: float | None = None
    sigma: float | None = None

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"pseudo weight transform must be as_stored or eq5, got {self.transform!r}")
        if self.transform == "eq5" and (self.mu is None or not self.sigma or self.sigma <= 0):
            raise ValueError(f"pseudo weight transform eq5 needs the stage's μ and σ > 0, got {self.mu}, {self.sigma}")

    @classmethod
    def from_store(cls, transform: str, store: str) -> "PseudoBoxWeighting":
        """`eq5` reads μ, σ from the store's manifest (and fails before training if it cannot); `as_stored` reads
        nothing."""
        if transform == "eq5":
            return cls(transform, *score_statistics(store))
        return cls(transform)

    def __call__(self, scores: Tensor, cosines: Tensor) -> Tensor:
        if self.transform == "as_stored":
            return scores
        return torch.sigmoid((cosines - self.mu) / self.sigma).to(scores.dtype)
