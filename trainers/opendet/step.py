"""One Open-Det loss evaluation: batch → model → criterion → named loss terms (the shape of trainers.hdovd_step).

Object names: each ground-truth box is named by its class (its label's name and the store's text embedding of that
name) — the COCO / LVIS category names of the issue; Visual-Genome-style per-box names need the store's
`regions.names` column, which extract-features does not fill yet.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from trainers.opendet.criterion import OpenDetCriterion
from trainers.opendet.model import OpenDetModel
from trainers.opendet.name_tokenizer import train_name_tokenizer
from trainers.train_config import TrainConfig
from trainers.vocabulary import ClassVocabulary


def named_targets(targets: list[dict[str, Tensor]], base_text_embeddings: Tensor, class_names: tuple[str, ...]
                  ) -> list[dict]:
    """B × {boxes (G, 4), labels (G,) base-class index} → B × {boxes, text_embeddings (G, Dt), names G strings}."""
    return [{"boxes": target["boxes"], "text_embeddings": base_text_embeddings[target["labels"]],
             "names": [class_names[label] for label in target["labels"].tolist()]} for target in targets]


def opendet_losses(model: OpenDetModel | torch.nn.Module, criterion: OpenDetCriterion, batch: Mapping[str, Any] | Any,
                   base_text_embeddings: Tensor) -> dict[str, Tensor]:
    """The named, weighted Open-Det loss terms of one batch (A.5, eq. 5); their sum is the training loss.

    batch: a mapping or object with `images` and `targets` (trainers.detectors contract; pseudo boxes are unused).
    model: an OpenDetModel or its DistributedDataParallel wrapper (called for the forward, unwrapped for parts)."""
    def field(name: str) -> Any:
        return batch[name] if isinstance(batch, Mapping) else getattr(batch, name)

    output = model(field("images"))
    targets = named_targets(field("targets"), base_text_embeddings, criterion.class_names)
    return criterion(getattr(model, "module", model), output, targets)


def build_opendet(config: TrainConfig, vocabulary: ClassVocabulary) -> tuple[OpenDetModel, OpenDetCriterion]:
    """The model (text width = the store's CLIP) and the criterion naming boxes by their base class.

    Without `name_generator.t5_dir`, the tiny T5's word tokenizer is trained on every class name of the vocab, as a
    real T5's vocabulary holds every word: knowing a word is not having learnt to say it for a novel object."""
    settings = config.opendet
    tokenizer = None if settings.name_generator.t5_dir else train_name_tokenizer(vocabulary.names)
    model = OpenDetModel.from_config(settings, vocabulary.embeddings.shape[1], tokenizer)
    return model, OpenDetCriterion(settings.loss, class_names=vocabulary.subset(novel=False).names)


def evaluate_opendet_checkpoint(config: TrainConfig, weights: dict, vocabulary: ClassVocabulary,
                                device: torch.device) -> tuple[dict, dict, str]:
    """(metrics, {"name_table": rows}, the name table as Markdown) of the Open-Det model in `weights` (a
    checkpoint's "detector" state dict); generated names map to category names with the store's own CLIP."""
    from trainers.opendet.evaluate import evaluate_opendet, format_name_table
    from trainers.opendet.name_encoder import store_clip_name_encoder

    model, _ = build_opendet(config, vocabulary)
    model.load_state_dict(weights)
    metrics, table = evaluate_opendet(model.to(device), vocabulary, config.eval, config.opendet.inference,
                                      store_clip_name_encoder(config.store), device)
    return metrics, {"name_table": table}, format_name_table(table)
