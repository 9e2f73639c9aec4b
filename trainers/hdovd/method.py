"""HD-OVD as a training method of the engine: its run config, the store it streams, the detector and criterion, the
batch losses, evaluation."""
from __future__ import annotations

import torch
from torch import nn

from trainers.data.batching import DetectorInputs
from trainers.hdovd.batch_losses import hdovd_losses
from trainers.hdovd.config import HdovdRunConfig
from trainers.hdovd.criterion import HdovdCriterion
from trainers.hdovd.detectors import build_detector
from trainers.hdovd.evaluate import evaluate
from trainers.pseudo_weights import PseudoBoxWeighting
from trainers.store_training import StoreContext, prepare_store_method, store_training_data
from trainers.training_method import TrainingMethod


def build_hdovd(config: HdovdRunConfig, context: StoreContext) -> tuple[nn.Module, HdovdCriterion]:
    """The detector of `hdovd.detector` and the criterion of `hdovd.loss`; their width must be the store's."""
    section = config.hdovd
    dim = context.vocabulary.embeddings.shape[1]
    if section.detector.embed_dim != dim:
        raise ValueError(f"the store's embeddings have D={dim}, but hdovd.detector.embed_dim="
                         f"{section.detector.embed_dim}; set --set hdovd.detector.embed_dim={dim}")
    weighting = PseudoBoxWeighting.from_store(section.loss.pseudo_weight_transform, config.store)
    return (build_detector(section.detector, section.classifier),
            HdovdCriterion(section.loss, dim, weighting))


def hdovd_batch_losses(detector: nn.Module, criterion: HdovdCriterion, batch: DetectorInputs,
                       context: StoreContext) -> dict[str, torch.Tensor]:
    return hdovd_losses(detector, criterion, batch, context.base_text)


def evaluate_hdovd(config: HdovdRunConfig, context: StoreContext, weights: dict, device: torch.device
                   ) -> tuple[dict, dict, str]:
    """(metrics, no details, no report) of the detector in `weights` (a checkpoint's "detector" state dict)."""
    section = config.hdovd
    detector = build_detector(section.detector, section.classifier).to(device)
    detector.load_state_dict(weights)
    return evaluate(detector, context.vocabulary, config.eval, section.inference, device, section.loss.tau_ckd), {}, ""


HDOVD = TrainingMethod(name="hdovd", run_config=HdovdRunConfig, prepare=prepare_store_method,
                       training_data=store_training_data, build=build_hdovd, losses=hdovd_batch_losses,
                       evaluate=evaluate_hdovd)
