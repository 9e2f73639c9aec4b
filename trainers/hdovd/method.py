"""HD-OVD as a training method of the engine: build the detector and criterion, the batch losses, evaluation."""
from __future__ import annotations

import torch
from torch import nn

from trainers.config import TrainConfig
from trainers.hdovd.batch_losses import hdovd_losses
from trainers.hdovd.criterion import HdovdCriterion
from trainers.hdovd.detectors import build_detector
from trainers.hdovd.evaluate import evaluate
from trainers.pseudo_weights import PseudoBoxWeighting
from trainers.training_method import TrainingMethod
from trainers.vocabulary import ClassVocabulary


def build_hdovd(config: TrainConfig, vocabulary: ClassVocabulary) -> tuple[nn.Module, HdovdCriterion]:
    """The detector of `hdovd.detector` and the criterion of `hdovd.loss`; their width must be the store's."""
    dim = vocabulary.embeddings.shape[1]
    if config.hdovd.detector.embed_dim != dim:
        raise ValueError(f"the store's embeddings have D={dim}, but hdovd.detector.embed_dim="
                         f"{config.hdovd.detector.embed_dim}; set --set hdovd.detector.embed_dim={dim}")
    weighting = PseudoBoxWeighting.from_store(config.hdovd.loss.pseudo_weight_transform, config.store)
    return build_detector(config.hdovd.detector), HdovdCriterion(config.hdovd.loss, dim, weighting)


def evaluate_hdovd(config: TrainConfig, weights: dict, vocabulary: ClassVocabulary, device: torch.device
                   ) -> tuple[dict, dict, str]:
    """(metrics, no details, no report) of the detector in `weights` (a checkpoint's "detector" state dict)."""
    detector = build_detector(config.hdovd.detector).to(device)
    detector.load_state_dict(weights)
    return evaluate(detector, vocabulary, config.eval, config.hdovd.inference, device), {}, ""


HDOVD = TrainingMethod(build=build_hdovd, losses=hdovd_losses, evaluate=evaluate_hdovd)
