"""How well a score separates two sets: the area under its ROC curve."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """The chance that a positive scores above a negative, ties counting half (the Mann-Whitney U statistic over
    len(positives) x len(negatives) pairs, from mid-ranks); None when either side is empty."""
    if not len(positives) or not len(negatives):
        return None
    values = np.concatenate([np.asarray(positives, np.float64), np.asarray(negatives, np.float64)])
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    mid_ranks = np.cumsum(counts) - (counts - 1) / 2  # tied values share the mean of their ranks (1-based)
    wins = mid_ranks[group[:len(positives)]].sum() - len(positives) * (len(positives) + 1) / 2
    return float(wins / (len(positives) * len(negatives)))
