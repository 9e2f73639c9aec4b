"""Sigmoid focal loss of one logit, in plain Python floats: what tests compare the batched losses with.

Focal loss (Lin et al. 2017, eq. 5) with RetinaNet's α = 0.25 and γ = 2, the values both methods' presets use."""
import math

ALPHA, GAMMA = 0.25, 2.0


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def focal(logit: float, target: bool, alpha: float = ALPHA, gamma: float = GAMMA) -> float:
    """−α (1−p)^γ log p for a positive, −(1−α) p^γ log(1−p) for a negative; p = sigmoid(logit)."""
    p = sigmoid(logit)
    if target:
        return alpha * (1 - p) ** gamma * -math.log(p)
    return (1 - alpha) * p**gamma * -math.log(1 - p)
