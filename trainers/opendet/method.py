"""Open-Det as a training method of the engine: its run config, the store it streams, the model and criterion, the
batch losses, evaluation."""
from __future__ import annotations

import dataclasses

import torch

from schemas.config import ConfigError
from trainers.data.batching import DetectorInputs
from trainers.distributed import global_rank
from trainers.modeling.backbones import WEIGHTS_FROM_CHECKPOINT
from trainers.opendet.batch_losses import opendet_losses
from trainers.opendet.config import OpenDetRunConfig
from trainers.opendet.criterion import OpenDetCriterion
from trainers.opendet.evaluate import evaluate_opendet, format_name_table, format_size_table
from trainers.opendet.model import OpenDetModel
from trainers.opendet.name_encoder import category_embeddings, check_name_encoder, load_name_encoder
from trainers.opendet.name_generator import reads_word_tokenizer
from trainers.opendet.name_tokenizer import train_name_tokenizer
from trainers.preflight import check_store_run, pseudo_box_counts
from trainers.store_training import StoreContext, excluded_labels, prepare_store_method, store_training_data
from trainers.training_method import TrainingMethod
from trainers.vocabulary import load_class_vocabulary, load_name_vocabulary


def build_opendet(config: OpenDetRunConfig, context: StoreContext) -> tuple[OpenDetModel, OpenDetCriterion]:
    """The model (text width = the store's CLIP) and the criterion naming boxes by their object names or base class.

    A T5 folder without tokenizer files (the demo's configs/shapes/name_generator_t5) reads a word tokenizer trained
    on every class and object name of the vocab (and, with pseudo names, every pseudo label), as a real T5's
    vocabulary holds every word: knowing a word is not having learnt to say it for a novel object. A sentence
    encoder for the evaluation is looked up here too, so a missing one stops the run before its first step."""
    settings, vocabulary = config.opendet, context.vocabulary
    check_name_encoder(settings.inference)
    object_names = load_name_vocabulary(config.store)
    labels = load_name_vocabulary(config.store, "label").names if settings.loss.pseudo_names else ()
    tokenizer = (train_name_tokenizer(vocabulary.names + object_names.names + labels)
                 if reads_word_tokenizer(settings.name_generator.t5_dir) else None)
    model = OpenDetModel.from_config(settings, vocabulary.embeddings.shape[1], tokenizer)
    return model, OpenDetCriterion(settings.loss, class_names=vocabulary.subset(novel=False).names,
                                   object_names=object_names.names, object_name_embeddings=object_names.embeddings)


def opendet_batch_losses(model: OpenDetModel, criterion: OpenDetCriterion, batch: DetectorInputs,
                         context: StoreContext) -> dict[str, torch.Tensor]:
    return opendet_losses(model, criterion, batch, context.base_text)


def evaluate_opendet_checkpoint(config: OpenDetRunConfig, context: StoreContext, weights: dict,
                                device: torch.device) -> tuple[dict, dict, str]:
    """(metrics, {"name_table": rows, "name_size_table": rows}, both tables as Markdown) of the Open-Det model in
    `weights` (a checkpoint's "detector" state dict); generated names map to category names with the text encoder of
    `opendet.inference.name_encoder` (default: the store's own CLIP), loaded before any evaluation work."""
    inference, vocabulary = config.opendet.inference, context.vocabulary
    name_encoder = load_name_encoder(inference, config.store)
    categories = category_embeddings(inference, vocabulary, name_encoder)
    model, _ = build_opendet(built_for_checkpoint(config), context)  # no ImageNet file: the checkpoint has it all
    model.load_state_dict(weights)
    metrics, tables = evaluate_opendet(model.to(device), vocabulary, config.eval, inference, name_encoder,
                                       categories, device)
    return metrics, tables, (format_name_table(tables["name_table"]) + "\n\n"
                             + format_size_table(tables["name_size_table"]))


def check_opendet(config: OpenDetRunConfig, training: bool, evaluating: bool) -> None:
    """Before any work: the paths the run reads (trainers.preflight) and, for training with pseudo names, the
    store's pseudo labels; the first line it prints says how many pseudo boxes the run names."""
    settings = config.opendet
    reader = check_store_run(config, training, evaluating, "opendet.detector.backbone_weights",
                             settings.detector.backbone_weights)
    if not training or not settings.loss.pseudo_names:
        return
    counts = pseudo_box_counts(reader, excluded_labels(config, load_class_vocabulary(config.store)))
    if not counts.has_stage:
        raise ConfigError(f"config key 'opendet.loss.pseudo_names': store {config.store} has no pseudo labels (no "
                          f"committed pseudo_labels shard) to name pseudo boxes with; run make pseudo-labels first, or "
                          f"set opendet.loss.pseudo_names=false")
    if global_rank() == 0:
        print(f"opendet: pseudo names from {counts.labelled - counts.left_out} labelled pseudo boxes "
              f"({counts.labels} distinct names) of {counts.boxes}")


def built_for_checkpoint(config: OpenDetRunConfig) -> OpenDetRunConfig:
    """The run config with the backbone's ImageNet file replaced by the checkpoint's weights (same structure)."""
    detector = config.opendet.detector
    if detector.backbone_weights is None:
        return config
    detector = dataclasses.replace(detector, backbone_weights=WEIGHTS_FROM_CHECKPOINT)
    return dataclasses.replace(config, opendet=dataclasses.replace(config.opendet, detector=detector))


OPENDET = TrainingMethod(name="opendet", run_config=OpenDetRunConfig, prepare=prepare_store_method,
                         training_data=store_training_data, build=build_opendet, losses=opendet_batch_losses,
                         evaluate=evaluate_opendet_checkpoint, check=check_opendet)
