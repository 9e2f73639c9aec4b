"""What the engine needs from a training method (HD-OVD, Open-Det): each method package's `method.py` fills one.

`build(config, vocabulary)` → (model, criterion), both modules; the criterion's state_dict is checkpointed too.
`losses(model, criterion, inputs, base_text_embeddings)` → named loss terms; their sum is the training loss.
`evaluate(config, weights, vocabulary, device)` → (metrics, details saved beside them, a report to print).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from trainers.config import TrainConfig
from trainers.vocabulary import ClassVocabulary


@dataclass(frozen=True)
class TrainingMethod:
    build: Callable[[TrainConfig, ClassVocabulary], tuple[nn.Module, nn.Module]]
    losses: Callable[[nn.Module, nn.Module, object, Tensor], dict[str, Tensor]]
    evaluate: Callable[[TrainConfig, dict, ClassVocabulary, torch.device], tuple[dict, dict, str]]
