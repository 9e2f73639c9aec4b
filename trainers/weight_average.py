"""An exponential moving average of the detector's weights, kept beside training and evaluated in its place.

Small batches on a tiny sample make the weights of the last step one noisy draw around where training settled;
the average over roughly the last 1 / (1 − decay) steps sits nearer the middle (Polyak and Juditsky 1992; detectors keep one as
YOLOv5's ModelEMA and detrex's `train.model_ema` do). It is passive: training reads only the trained weights, so a
run with an average takes exactly the steps of the same run without one.

After update n (1, 2, …) every floating-point entry of the state dict moves as avg ← d·avg + (1 − d)·w with
d = min(decay, (1 + n) / (10 + n)), TensorFlow's `ExponentialMovingAverage(num_updates=…)` rule: early averages
forget the random initialisation fast, later ones average over about 1 / (1 − decay) steps. Integer entries
(counters) are copied.
"""
from __future__ import annotations

import torch


class WeightAverage:
    def __init__(self, detector: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in (0, 1) to keep an average, got {decay}")
        self.decay = decay
        self.updates = 0
        self.weights = {name: value.detach().clone() for name, value in detector.state_dict().items()}

    def decay_at(self, updates: int) -> float:
        """d of update number `updates` (1-based)."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, detector: torch.nn.Module) -> None:
        """Move the average towards `detector`'s weights; once per optimizer step."""
        self.updates += 1
        keep = self.decay_at(self.updates)
        for name, value in detector.state_dict().items():
            average = self.weights[name]
            if average.is_floating_point():
                average.lerp_(value.detach().to(average.dtype), 1.0 - keep)
            else:
                average.copy_(value)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.weights) - set(state["weights"])
        if missing:
            raise ValueError(f"the checkpoint's weight average lacks {len(missing)} detector entries "
                             f"(first: {sorted(missing)[0]}); was it written by another model config?")
        self.updates = int(state["updates"])  # the decay stays the config's: a resumed run may change it
        for name, average in self.weights.items():
            average.copy_(state["weights"][name])


def evaluated_weights(checkpoint: dict, choice: str) -> tuple[dict, str]:
    """(detector state dict, "average" or "trained") of a checkpoint for `eval.weights` = `choice`: the average
    when asked for and the run kept one, else the weights of its last step."""
    if choice == "average" and "detector_average" in checkpoint:
        return checkpoint["detector_average"]["weights"], "average"
    return checkpoint["detector"], "trained"
