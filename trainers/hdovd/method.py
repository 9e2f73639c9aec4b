"""HD-OVD as a training method of the engine: its run config, the store it streams, the detector and criterion, the
batch losses, evaluation."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from trainers.data.batching import DetectorInputs
from trainers.hdovd.batch_losses import hdovd_losses
from schemas.config import ConfigError
from trainers.distributed import global_rank
from trainers.hdovd.config import DetectorConfig, HdovdRunConfig
from trainers.hdovd.criterion import HdovdCriterion
from trainers.hdovd.detectors import build_detector
from trainers.hdovd.evaluate import evaluate
from trainers.modeling.backbones import WEIGHTS_FROM_CHECKPOINT
from trainers.preflight import PseudoBoxCounts, check_store_run, pseudo_box_counts
from trainers.pseudo_weights import PseudoBoxWeighting
from trainers.store_training import StoreContext, excluded_labels, prepare_store_method, store_training_data
from trainers.training_method import TrainingMethod
from trainers.vocabulary import load_class_vocabulary


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


def check_hdovd(config: HdovdRunConfig, training: bool, evaluating: bool) -> None:
    """Before any work: the paths the run reads (trainers.preflight) and, for training, the pseudo labels its
    pseudo classes need; the first line it prints says how many pseudo boxes and classes the run trains on."""
    section = config.hdovd
    reader = check_store_run(config, training, evaluating, "hdovd.detector.backbone_weights",
                             section.detector.backbone_weights)
    if not training:
        return
    counts = pseudo_box_counts(reader, excluded_labels(config, load_class_vocabulary(config.store)))
    wanted = section.loss.pseudo_classes and config.stream.use_pseudo_labels
    if wanted and not counts.has_stage and not section.allow_no_pseudo_labels:
        raise ConfigError(
            f"config key 'store': {config.store} has no pseudo labels (no committed pseudo_labels shard), so HD-OVD's "
            f"pseudo classes (hdovd.loss.pseudo_classes, Table V's Cls.) would get none and the run would train the "
            f"row without them. Run make pseudo-labels first, or set hdovd.allow_no_pseudo_labels=true to train "
            f"without pseudo classes")
    if global_rank() == 0:
        print(f"hdovd: {pseudo_classes_line(config, counts, wanted)}")


def pseudo_classes_line(config: HdovdRunConfig, counts: PseudoBoxCounts, wanted: bool) -> str:
    boxes = f"{counts.boxes} pseudo boxes distilled (CKD, RKD)"
    if not wanted:
        switch = ("hdovd.loss.pseudo_classes=false" if not config.hdovd.loss.pseudo_classes
                  else "stream.use_pseudo_labels=false")
        return f"{boxes}; no pseudo classes ({switch})"
    if not counts.has_stage:
        return (f"{boxes}; no pseudo classes: store {config.store} has no pseudo labels "
                f"(hdovd.allow_no_pseudo_labels=true), so this trains Table V's row without Cls., not HD-OVD")
    kept = counts.labelled - counts.left_out
    left_out = f", {counts.left_out} left out as naming a base class" if counts.left_out else ""
    return f"{boxes}; {kept} of them labelled, {counts.labels} distinct pseudo classes{left_out}"


def evaluate_hdovd(config: HdovdRunConfig, context: StoreContext, weights: dict, device: torch.device
                   ) -> tuple[dict, dict, str]:
    """(metrics, no details, no report) of the detector in `weights` (a checkpoint's "detector" state dict). The
    detector is built as trained, with its backbone's weights from the checkpoint: no ImageNet file is read."""
    section = config.hdovd
    detector = build_detector(built_for_checkpoint(section.detector), section.classifier).to(device)
    detector.load_state_dict(weights)
    return evaluate(detector, context.vocabulary, config.eval, section.inference, device, section.loss.tau_ckd), {}, ""


def built_for_checkpoint(detector: DetectorConfig) -> DetectorConfig:
    """The detector config with its ImageNet file replaced by the checkpoint's weights (same structure)."""
    if detector.backbone_weights is None:
        return detector
    return dataclasses.replace(detector, backbone_weights=WEIGHTS_FROM_CHECKPOINT)


HDOVD = TrainingMethod(name="hdovd", run_config=HdovdRunConfig, prepare=prepare_store_method,
                       training_data=store_training_data, build=build_hdovd, losses=hdovd_batch_losses,
                       evaluate=evaluate_hdovd, check=check_hdovd)
