"""One Open-Det loss evaluation: batch → model → criterion → named loss terms (the shape of trainers.hdovd.batch_losses).

Object names: a ground-truth box that carries names (the store's `regions.names`, written by extract-features with
`dataset.names` / `dataset.object_names`) is named, each step afresh, by one of its alternatives drawn uniformly
("red star" or "star"), with that name's text embedding from the store's vocab rows of kind "name". A box without
names (stores written without them) is named by its class: the class name and the class text embedding. The draws
use torch's global generator, which the loop seeds and checkpoints save, so `--resume` continues them exactly.

Pseudo names (`opendet.loss.pseudo_names`): the batch's labelled pseudo boxes (HD-OVD's, from the store's
pseudo_labels table; labels naming a base class already left out by the loop) become objects named by their label,
with the label's text embedding, language weight = the stored score s_j, and no box regression; those whose
class-agnostic proposal score is below `pseudo_min_proposal_score` are left out.
"""
from __future__ import annotations

import torch
from torch import Tensor

from trainers.data.batching import DetectorInputs
from trainers.opendet.criterion import OpenDetCriterion
from trainers.opendet.model import OpenDetModel


def pick_object_names(box_names: list[list[tuple[str, ...] | None]], generator: torch.Generator | None = None
                      ) -> list[list[str | None]]:
    """B × G × (alternative names, or None) → B × G × (one alternative drawn uniformly, or None).

    One draw per box with two or more alternatives, from `generator` (default: torch's global CPU generator, the
    training RNG); nothing is drawn when no box has a choice, so batches without names leave the RNG untouched."""
    choices = sum(1 for names in box_names for alternatives in names if alternatives and len(alternatives) > 1)
    draws = iter(torch.rand(choices, generator=generator).tolist() if choices else ())

    def pick(alternatives: tuple[str, ...] | None) -> str | None:
        if not alternatives or len(alternatives) == 1:
            return alternatives[0] if alternatives else None
        return alternatives[min(int(next(draws) * len(alternatives)), len(alternatives) - 1)]

    return [[pick(alternatives) for alternatives in names] for names in box_names]


def named_targets(targets: list[dict[str, Tensor]], base_text_embeddings: Tensor, class_names: tuple[str, ...],
                  box_names: list[list[str | None]] | None = None, object_names: tuple[str, ...] = (),
                  object_name_embeddings: Tensor | None = None) -> list[dict]:
    """B × {boxes (G, 4), labels (G,) base-class index} → B × {boxes, text_embeddings (G, Dt), names G strings}.

    box_names: B × G picked names (pick_object_names), None for a box named by its class; object_names and
    object_name_embeddings (N, Dt): the vocab rows of kind "name" that hold their text embeddings."""
    offset = base_text_embeddings.shape[0]
    table = base_text_embeddings
    if object_names:
        table = torch.cat([base_text_embeddings, object_name_embeddings.to(base_text_embeddings)])
    row_of = {name: offset + row for row, name in enumerate(object_names)}
    named = []
    for image, target in enumerate(targets):
        labels = target["labels"].tolist()
        names = box_names[image] if box_names is not None else [None] * len(labels)
        rows, strings = [], []
        for label, name in zip(labels, names):
            if name is None:
                rows.append(label)
                strings.append(class_names[label])
                continue
            if name not in row_of:
                raise ValueError(f"object name {name!r} of a ground-truth box has no vocab row of kind 'name'; the "
                                 "store's regions and vocab come from different extract-features runs (rerun it)")
            rows.append(row_of[name])
            strings.append(name)
        index = torch.as_tensor(rows, dtype=torch.long, device=table.device)
        named.append({"boxes": target["boxes"], "text_embeddings": table[index], "names": strings})
    return named


def with_pseudo_objects(named: list[dict], pseudo: list[dict[str, Tensor]], pseudo_names: list[str],
                        min_proposal_score: float = 0.0) -> list[dict]:
    """B × named targets (named_targets) + B × pseudo boxes {boxes, label_ids, scores, proposal_scores,
    text_embeddings} with `pseudo_names` (label id → string) → B × {boxes, text_embeddings, names, weights,
    regress}: ground-truth objects first (weight 1, regressed), then the kept pseudo boxes (weight s_j, not
    regressed)."""
    merged = []
    for target, boxes in zip(named, pseudo):
        keep = boxes["proposal_scores"] >= min_proposal_score if min_proposal_score > 0 else torch.ones_like(
            boxes["scores"], dtype=torch.bool)
        keep = keep & torch.isfinite(boxes["scores"])
        count, kept = len(target["boxes"]), int(keep.sum())
        device = target["boxes"].device
        text = target["text_embeddings"]
        merged.append({
            "boxes": torch.cat([target["boxes"], boxes["boxes"][keep].to(target["boxes"])]),
            "text_embeddings": torch.cat([text, boxes["text_embeddings"][keep].to(text)]),
            "names": list(target["names"]) + [pseudo_names[i] for i in boxes["label_ids"][keep].tolist()],
            "weights": torch.cat([torch.ones(count, device=device), boxes["scores"][keep].to(device, torch.float32)]),
            "regress": torch.cat([torch.ones(count, dtype=torch.bool, device=device),
                                  torch.zeros(kept, dtype=torch.bool, device=device)]),
        })
    return merged


def opendet_losses(model: OpenDetModel | torch.nn.Module, criterion: OpenDetCriterion, batch: DetectorInputs,
                   base_text_embeddings: Tensor) -> dict[str, Tensor]:
    """The named, weighted Open-Det loss terms of one batch (A.5, eq. 5); their sum is the training loss.

    batch: its images, targets, object names and (with `loss.pseudo_names`) pseudo boxes and their names.
    model: an OpenDetModel or its DistributedDataParallel wrapper (called for the forward, unwrapped for parts)."""
    output = model(batch.images)
    box_names = batch.object_names
    targets = named_targets(batch.targets, base_text_embeddings, criterion.class_names,
                            pick_object_names(box_names) if box_names else None, criterion.object_names,
                            criterion.object_name_embeddings)
    config = criterion.config
    if config.pseudo_names:
        targets = with_pseudo_objects(targets, batch.pseudo, batch.pseudo_names, config.pseudo_min_proposal_score)
    return criterion(getattr(model, "module", model), output, targets)
