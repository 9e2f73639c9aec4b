"""The teachers' optimisation loop, shared by CLIP, ClipCap and the VLM teacher: each gives the loss of one step;
the loop sets the learning rate (linear warm-up, then cosine decay to zero), refuses a non-finite loss, steps the
optimizer and logs a line every `log_every` steps."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class StepPlan:
    name: str  # the teacher, as log lines and errors name it ("clip", "clipcap", "vlm")
    steps: int
    warmup_steps: int
    batch_size: int
    unit: str  # what one batch row is, for the rate in the log ("img", "captions", "examples")
    lr_flag: str  # the setting to lower when the loss is not finite
    log_every: int = 100


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def run_training_steps(plan: StepPlan, optimizer: torch.optim.Optimizer, step_loss: Callable[[int], torch.Tensor],
                       log: Callable[[str], None], *, after_step: Callable[[], None] | None = None,
                       log_detail: Callable[[], str] | None = None) -> list[float]:
    """Run plan.steps optimizer steps on `step_loss(step)`; returns the loss of every step.

    Each parameter group keeps its own base rate (`base_lr`, its `lr` when first seen). after_step runs after each
    optimizer step (e.g. a clamp); log_detail adds text to each log line."""
    for group in optimizer.param_groups:
        group.setdefault("base_lr", group["lr"])
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(plan.steps):
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * learning_rate_factor(step, plan.warmup_steps, plan.steps)
        loss = step_loss(step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{plan.name} training loss is {loss.item()} at step {step}; "
                                     f"lower {plan.lr_flag}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        losses.append(loss.item())
        if step % plan.log_every == 0 or step == plan.steps - 1:
            rate = (step + 1) * plan.batch_size / (time.perf_counter() - start)
            detail = f" {log_detail()}" if log_detail is not None else ""
            log(f"{plan.name} step {step:4d}/{plan.steps} loss {loss.item():.4f}{detail} {rate:.0f} {plan.unit}/s")
    return losses
