"""What the engine needs from a training method (HD-OVD, Open-Det, …): each method package's `method.py` fills one.

The engine (trainers.loop) owns the schedule, optimisation, devices, checkpoints and logging; a method owns its
config section, where its training samples come from, its model and losses, and its evaluation:

    config  = method.run_config(...)                 # the engine's keys + the section named `method.name`
    method.check(config, training, evaluating)       # before any work: what the run will read is there (paths,
                                                     # tables), else a ConfigError naming the config key
    context = method.prepare(config, device)         # read once before training or evaluation (e.g. the store's
                                                     # vocabulary); passed back to every call below
    data    = method.training_data(config, context)  # TrainingData: samples, collate, batches per epoch
    model, criterion = method.build(config, context) # both modules; the criterion's state_dict is checkpointed too
    losses  = method.losses(model, criterion, batch, context)   # named loss terms; their sum is the training loss
    metrics, details, report = method.evaluate(config, context, weights, device)

The engine never reads a method's section and a method never imports another method (python3
../shared/tools/import_graph.py checks it); the registry of methods by name is trainers.methods.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from trainers.config import TrainConfig


class ResumableDataset(Protocol):
    """An IterableDataset that can start an epoch after `batches_done` micro-batches, as an exact resume needs."""

    def set_position(self, epoch: int, batches_done: int) -> None: ...


@dataclass(frozen=True)
class TrainingData:
    """A method's training samples as the engine's DataLoader reads them.

    dataset: yields one sample per image (split by rank and loader worker itself), resumable by position;
    collate: the DataLoader's collate_fn, run in the loader worker (what crosses to the training process);
    to_batch(collated, device): what `losses` reads, on `device`, in the training process;
    images_per_epoch: images one epoch yields over all processes (sets the number of steps per epoch).
    """

    dataset: IterableDataset
    collate: Callable[[list], Any]
    to_batch: Callable[[Any, torch.device], Any]
    images_per_epoch: int


@dataclass(frozen=True)
class TrainingMethod:
    name: str
    run_config: type[TrainConfig]
    prepare: Callable[[TrainConfig, torch.device], Any]
    training_data: Callable[[TrainConfig, Any], TrainingData]
    build: Callable[[TrainConfig, Any], tuple[nn.Module, nn.Module]]
    losses: Callable[[nn.Module, nn.Module, Any, Any], dict[str, Tensor]]
    evaluate: Callable[[TrainConfig, Any, dict, torch.device], tuple[dict, dict, str]]
    check: Callable[[TrainConfig, bool, bool], None] = lambda config, training, evaluating: None
