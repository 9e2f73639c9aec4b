"""The class-agnostic proposal network as a training method of the engine: its run config, the base boxes it trains
on, the network and its losses, and its evaluation (average recall on base and held-out novel ground truth).

What it reads is checked before any work: the annotation file must hold base boxes only (a box of a novel category
of the split refuses it, naming the file), the images folder must exist; the evaluation's held-out file is read by
the evaluation alone.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from pipelines.coco import AnnotationError
from schemas.config import ConfigError
from trainers.distributed import global_rank
from trainers.modeling.backbones import WEIGHTS_FROM_CHECKPOINT
from trainers.preflight import check_file, check_folder
from trainers.proposer.base_boxes import BaseBoxes, read_base_boxes
from trainers.proposer.config import ProposerRunConfig
from trainers.proposer.dataset import (BaseBoxDataset, BaseBoxStream, ImageAugmentation, TrainingBatch,
                                       collate_samples)
from trainers.proposer.evaluate import evaluate_network
from trainers.proposer.inference import ProposalGenerator
from trainers.proposer.network import ProposalNetwork
from trainers.training_method import TrainingData, TrainingMethod

ANNOTATIONS_KEY = "proposer.data.annotations"


def read_training_boxes(config: ProposerRunConfig) -> BaseBoxes:
    """The base boxes the run trains on; a novel box, an unreadable file or no base box at all is a ConfigError
    naming the file and the key."""
    data = config.proposer.data
    try:
        return read_base_boxes(data.annotations, data.split, ANNOTATIONS_KEY)
    except (AnnotationError, FileNotFoundError, ValueError) as error:
        raise ConfigError(f"config key '{ANNOTATIONS_KEY}': {error}") from error


def check_proposer(config: ProposerRunConfig, training: bool, evaluating: bool) -> None:
    data, evaluation = config.proposer.data, config.eval
    if training:
        check_file(ANNOTATIONS_KEY, data.annotations, "the base-class annotation file")
        check_folder("proposer.data.image_root", data.image_root, "the training images folder")
        check_file("proposer.network.backbone_weights", config.proposer.network.backbone_weights,
                   "the backbone's ImageNet weights file")
        boxes = read_training_boxes(config)
        if global_rank() == 0:
            print(f"proposer: {boxes.summary()}")
    if evaluating:
        check_file("eval.base_annotations", evaluation.base_annotations or data.annotations,
                   "the recall evaluation's annotation file")
        check_folder("eval.image_root", evaluation.image_root or data.image_root, "the recall evaluation's images")
        check_file("eval.novel_annotations", evaluation.novel_annotations, "the held-out novel annotation file")


def prepare_proposer(config: ProposerRunConfig, device: torch.device) -> None:
    """Nothing shared: training reads its boxes (proposer_training_data), evaluation its own files."""
    return None


def proposer_training_data(config: ProposerRunConfig, context: None) -> TrainingData:
    """The base boxes of proposer.data.annotations, read once, as a resumable stream of augmented images."""
    data, boxes = config.proposer.data, read_training_boxes(config)
    augmentation = ImageAugmentation(data.flip_probability, data.vertical_flip_probability, data.transpose_probability)
    stream = BaseBoxStream(BaseBoxDataset(boxes, data.image_root, augmentation, config.seed), config.batch_size,
                           config.seed)
    return TrainingData(stream, collate_samples, _to_device, len(boxes.images))


def _to_device(batch: TrainingBatch, device: torch.device) -> TrainingBatch:
    for image in batch.unreadable:  # the run goes on without it; the log names it
        print(f"proposer: skipped image {image.image_id} ({image.file_name}): {image.reason}", flush=True)
    return dataclasses.replace(batch, images=[image.to(device, non_blocking=True) for image in batch.images],
                               boxes=[boxes.to(device, non_blocking=True) for boxes in batch.boxes])


class NoCriterion(nn.Module):
    """The network computes its own losses (as torchvision's detectors do); the engine's criterion slot is empty."""


def build_proposer(config: ProposerRunConfig, context: None) -> tuple[ProposalNetwork, nn.Module]:
    return ProposalNetwork.from_config(config.proposer.network), NoCriterion()


def proposer_losses(network: ProposalNetwork | nn.Module, criterion: nn.Module, batch: TrainingBatch,
                    context: None) -> dict[str, torch.Tensor]:
    """RPN objectness and box, box-head score and box: their sum is the training loss. `network` may be its
    DistributedDataParallel wrapper (called, never unwrapped)."""
    if not batch.images:  # every image of the micro-batch was unreadable: a zero that still reaches every weight
        return {"loss_no_readable_image": sum(parameter.sum() * 0.0 for parameter in network.parameters())}
    return network(batch.images, batch.boxes)


def evaluate_proposer(config: ProposerRunConfig, context: None, weights: dict,
                      device: torch.device) -> tuple[dict, dict, str]:
    """Average recall (AR and R50 at each of eval.max_dets) on base and held-out novel ground truth."""
    network_config = config.proposer.network
    if network_config.backbone_weights is not None:  # no ImageNet file needed: the checkpoint has every weight
        network_config = dataclasses.replace(network_config, backbone_weights=WEIGHTS_FROM_CHECKPOINT)
    network = ProposalNetwork.from_config(network_config)
    network.load_state_dict(weights)
    generator = ProposalGenerator(network, config.proposer.output, device, config.proposer.network)
    return evaluate_network(generator, config)


PROPOSER = TrainingMethod(name="proposer", run_config=ProposerRunConfig, prepare=prepare_proposer,
                          training_data=proposer_training_data, build=build_proposer, losses=proposer_losses,
                          evaluate=evaluate_proposer, check=check_proposer)
