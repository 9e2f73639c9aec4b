"""Open-Det inference and its evaluation protocol (Sec. 4, "Evaluation Metrics"; GenerateU's protocol).

1. Vocabulary-free: each kept query gets a box, an objectness and a beam-searched name.
2. Evaluation only: a fixed text encoder embeds the generated names; faiss finds the most similar category names;
   each (box, category) pair scores sqrt(objectness · similarity), top-15 categories per box; AP with pycocotools.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import faiss
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_convert, clip_boxes_to_image

from trainers.opendet.model import OpenDetModel
from trainers.opendet.config import OpenDetInferenceConfig

# names → (N, D) float32 L2-normalised embeddings in the space of the category embeddings.
NameEncoder = Callable[[list[str]], Tensor]


@dataclass
class NamedBoxes:
    """One image. boxes: (K, 4) float xyxy pixels; objectness: (K,) float in [0, 1]; names: K strings."""

    boxes: Tensor
    objectness: Tensor
    names: list[str]


@torch.inference_mode()
def detect_named_boxes(model: OpenDetModel, images: list[Tensor], config: OpenDetInferenceConfig) -> list[NamedBoxes]:
    """images: B × (3, H, W) float in [0, 1] → per image the `max_boxes` most object-like queries, named."""
    output = model(images)
    final = output.layers[-1]
    prompts = model.prompts(output)
    results = []
    for image, (height, width) in enumerate(output.image_sizes):
        valid = ~output.padding[image]
        objectness = final.binary_logits[image][valid].sigmoid()
        keep = objectness.argsort(descending=True)[: config.max_boxes]
        scale = final.boxes.new_tensor([width, height, width, height])
        boxes = box_convert(final.boxes[image][valid][keep], "cxcywh", "xyxy") * scale
        boxes = clip_boxes_to_image(boxes, (height, width))  # a centre ± half a side can leave the image
        names = model.name_generator.generate(prompts[image][valid][keep])
        results.append(NamedBoxes(boxes, objectness[keep], names))
    return results


def nearest_categories(name_embeddings: Tensor, category_embeddings: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Cosine kNN with faiss (inner product of L2-normalised rows): (N, D), (C, D) → similarities (N, k'),
    category indices (N, k'), k' = min(k, C)."""
    index = faiss.IndexFlatIP(category_embeddings.shape[1])
    index.add(np.ascontiguousarray(category_embeddings.detach().cpu().float().numpy()))
    query = np.ascontiguousarray(name_embeddings.detach().cpu().float().numpy())
    similarities, indices = index.search(query, min(k, category_embeddings.shape[0]))
    return torch.from_numpy(similarities), torch.from_numpy(indices).long()


def name_detections(named: NamedBoxes, name_encoder: NameEncoder, category_embeddings: Tensor, top_classes: int
                    ) -> dict[str, Tensor]:
    """One image → {boxes (M, 4), scores (M,), labels (M,) category index, top1 (K,)}: each named box once per top
    category, score = sqrt(objectness · max(similarity, 0)) (Open-Det / GenerateU evaluation); `top1` is each box's
    most similar category, −1 for a box whose generated name is empty (no name is no detection)."""
    named_rows = [row for row, name in enumerate(named.names) if name.strip()]
    top1 = torch.full((len(named.names),), -1, dtype=torch.long)
    if not named_rows:
        empty = torch.zeros(0)
        return {"boxes": torch.zeros(0, 4), "scores": empty, "labels": empty.long(), "top1": top1}
    similarities, labels = nearest_categories(name_encoder([named.names[row] for row in named_rows]),
                                              category_embeddings, top_classes)
    rows = torch.as_tensor(named_rows)
    top1[rows] = labels[:, 0]  # faiss lists the most similar category first
    objectness = named.objectness.detach().cpu().float()[rows, None]
    scores = (objectness * similarities.clamp(min=0)).sqrt()
    boxes = named.boxes.detach().cpu().float()[rows, None, :].expand(-1, labels.shape[1], -1)
    return {"boxes": boxes.reshape(-1, 4), "scores": scores.reshape(-1), "labels": labels.reshape(-1),
            "top1": top1}


def cached(encoder: NameEncoder) -> NameEncoder:
    """Generated names repeat a lot ("circle" thousands of times); embed each distinct name once."""
    memory: dict[str, Tensor] = {}

    def encode(names: list[str]) -> Tensor:
        new = sorted({name for name in names if name not in memory})
        if new:
            memory.update(zip(new, encoder(new)))
        return torch.stack([memory[name] for name in names])

    return encode
