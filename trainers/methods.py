"""Training methods by `TrainConfig.method`: how to build the model and its criterion, and the step's losses.

`losses(model, criterion, inputs, base_text_embeddings)` → named loss terms; their sum is the training loss.
`evaluate(config, weights, vocabulary, device)` → (metrics, details saved beside them, a report to print).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from trainers.hdovd.detectors import build_detector
from trainers.hdovd.evaluate import evaluate
from trainers.hdovd.batch_losses import hdovd_losses
from trainers.hdovd.criterion import HdovdCriterion
from trainers.config import TrainConfig
from trainers.vocabulary import ClassVocabulary


@dataclass(frozen=True)
class TrainingMethod:
    build: Callable[[TrainConfig, ClassVocabulary], tuple[nn.Module, nn.Module]]
    losses: Callable[[nn.Module, nn.Module, object, Tensor], dict[str, Tensor]]
    evaluate: Callable[[TrainConfig, dict, ClassVocabulary, torch.device], tuple[dict, dict, str]]


def build_hdovd(config: TrainConfig, vocabulary: ClassVocabulary) -> tuple[nn.Module, HdovdCriterion]:
    dim = vocabulary.embeddings.shape[1]
    if config.model.detector.embed_dim != dim:
        raise ValueError(f"the store's embeddings have D={dim}, but model.detector.embed_dim="
                         f"{config.model.detector.embed_dim}; set --set model.detector.embed_dim={dim}")
    return build_detector(config.model.detector), HdovdCriterion(config.model.loss, dim)


def evaluate_hdovd(config: TrainConfig, weights: dict, vocabulary: ClassVocabulary, device: torch.device
                   ) -> tuple[dict, dict, str]:
    detector = build_detector(config.model.detector).to(device)
    detector.load_state_dict(weights)
    return evaluate(detector, vocabulary, config.eval, config.model.inference, device), {}, ""


def _hdovd() -> TrainingMethod:
    return TrainingMethod(build_hdovd, hdovd_losses, evaluate_hdovd)


def _opendet() -> TrainingMethod:
    # transformers + peft: imported only for Open-Det runs
    from trainers.opendet.batch_losses import build_opendet, evaluate_opendet_checkpoint, opendet_losses

    return TrainingMethod(build_opendet, opendet_losses, evaluate_opendet_checkpoint)


METHODS: dict[str, Callable[[], TrainingMethod]] = {"hdovd": _hdovd, "opendet": _opendet}


def training_method(name: str) -> TrainingMethod:
    if name not in METHODS:
        raise KeyError(f"method={name!r} is unknown; choose one of {sorted(METHODS)}")
    return METHODS[name]()
