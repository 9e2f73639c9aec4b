"""Optimizer and learning-rate schedule: linear warm-up per step, then the 1x step decay per epoch."""
from __future__ import annotations

import torch

from trainers.config import OptimConfig

WARMUP_START_FACTOR = 0.001  # mmdet's default warm-up ratio


def scaled_schedule(config: OptimConfig) -> tuple[int, list[int]]:
    """(epochs, milestones) of the schedule scaled by `schedule_scale`, at least one epoch."""
    epochs = max(1, round(config.epochs * config.schedule_scale))
    milestones = sorted({max(1, round(m * config.schedule_scale)) for m in config.lr_milestones})
    return epochs, [m for m in milestones if m < epochs]


def build_optimizer(parameters, config: OptimConfig) -> torch.optim.Optimizer:
    trainable = [p for p in parameters if p.requires_grad]
    if config.name == "sgd":
        return torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)


class WarmupMultiStep:
    """lr = base · warm-up factor(step) · gamma^(number of milestones passed by `epoch`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: OptimConfig):
        self.optimizer = optimizer
        self.config = config
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        _, self.milestones = scaled_schedule(config)
        self.step_count = 0
        self.epoch = 0
        self._apply()

    def factor(self) -> float:
        warmup = self.config.warmup_steps
        ramp = 1.0 if warmup <= 0 or self.step_count >= warmup else \
            WARMUP_START_FACTOR + (1 - WARMUP_START_FACTOR) * self.step_count / warmup
        decays = sum(self.epoch >= m for m in self.milestones)
        return ramp * self.config.lr_gamma ** decays

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.factor()

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "epoch": self.epoch, "base_lrs": self.base_lrs}

    def load_state_dict(self, state: dict) -> None:
        self.step_count, self.epoch, self.base_lrs = state["step_count"], state["epoch"], list(state["base_lrs"])
        self._apply()
