"""What the methods that stream the feature store (HD-OVD, Open-Det) read besides their section: the store's class
vocabulary, its training samples, and the batch conversion from the loader to the losses."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from featurestore.label_names import names_any_class
from featurestore.reader import StoreReader
from trainers.config import StoreTrainConfig
from trainers.data.batching import DetectorInputs, to_detector_inputs
from trainers.data.streaming import StoreDetectionDataset
from trainers.data.worker_transfer import collate_for_transfer, received_batch
from trainers.training_method import TrainingData
from trainers.vocabulary import ClassVocabulary, load_class_vocabulary


@dataclass(frozen=True)
class StoreContext:
    """vocabulary: every class of the store (novel ones only for evaluation); base_text: (M, D) float32 text
    embeddings of the base classes on the training device, label index = row; excluded_label(name) True leaves a
    pseudo box out of training (drop_pseudo_labels_naming_base), None keeps every labelled one."""

    vocabulary: ClassVocabulary
    base_text: torch.Tensor
    excluded_label: Callable[[str], bool] | None


def prepare_store_method(config: StoreTrainConfig, device: torch.device) -> StoreContext:
    vocabulary = load_class_vocabulary(config.store)
    base = vocabulary.subset(novel=False)
    return StoreContext(vocabulary, base.embeddings.to(device), excluded_labels(config, vocabulary))


def excluded_labels(config: StoreTrainConfig, vocabulary: ClassVocabulary) -> Callable[[str], bool] | None:
    """label → True when training leaves its pseudo box out (drop_pseudo_labels_naming_base), or None."""
    if not config.drop_pseudo_labels_naming_base:
        return None
    return functools.partial(names_any_class, class_names=vocabulary.subset(novel=False).names)


def store_training_data(config: StoreTrainConfig, context: StoreContext) -> TrainingData:
    """The store's images with their GT boxes, region embeddings and pseudo boxes, streamed shard by shard."""
    base = context.vocabulary.subset(novel=False)
    dataset = StoreDetectionDataset(config.store, config.image_root, base.index_of, config.stream, config.batch_size)

    def to_batch(collated: dict, device: torch.device) -> DetectorInputs:
        return to_detector_inputs(received_batch(collated), use_pseudo_boxes=True, device=device,
                                  excluded_label=context.excluded_label)

    return TrainingData(dataset, collate_for_transfer, to_batch, store_images(config.store))


def store_images(store: str) -> int:
    """The number of images the store's committed `images` shards hold."""
    return sum(c.files["images"].rows or 0 for c in StoreReader(store).table_commits("images"))
