"""Training methods by `TrainConfig.method` (the contract is trainers.training_method.TrainingMethod)."""
from __future__ import annotations

from trainers.hdovd.method import HDOVD
from trainers.opendet.method import OPENDET
from trainers.training_method import TrainingMethod

METHODS: dict[str, TrainingMethod] = {"hdovd": HDOVD, "opendet": OPENDET}


def training_method(name: str) -> TrainingMethod:
    if name not in METHODS:
        raise KeyError(f"method={name!r} is unknown; choose one of {sorted(METHODS)}")
    return METHODS[name]
