"""Open-Det inference and its evaluation protocol (Sec. 4, "Evaluation Metrics"; GenerateU's protocol).

1. Vocabulary-free: each kept query gets a box, an objectness and beam-searched names (every beam, best first).
2. Evaluation only: a fixed text encoder embeds each box's names ("a " + its beams joined by ", ", as the released
   code does); faiss finds the most similar category names; each (box, category) pair scores
   sqrt(objectness · similarity), top-15 categories per box; AP with pycocotools. GenerateU's softmax mapping is
   the option `inference.mapping=softmax`.
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

# Released DDETRSVLUni.inference: a box's joined beams longer than 75 characters are cut there before "a " is put in
# front (CLIP's text encoder reads 77 tokens).
MAX_DESCRIPTION_CHARS = 75


@dataclass
class NamedBoxes:
    """One image. boxes: (K, 4) float xyxy pixels; objectness: (K,) float in [0, 1]; names: K strings, each box's
    best beam; beams: K tuples of every beam's name, best first (None: `names` alone)."""

    boxes: Tensor
    objectness: Tensor
    names: list[str]
    beams: list[tuple[str, ...]] | None = None

    def descriptions(self, join_beams: bool = True, prefix: str = "") -> list[str]:
        """What the evaluation's text encoder embeds per box: `prefix` + the beams joined with ", " and cut at
        MAX_DESCRIPTION_CHARS (released code: "a " + ", ".join(3 beams)[:75]), or + the best beam alone; "" where
        the box has no name at all."""
        beams = self.beams if (join_beams and self.beams is not None) else [(name,) for name in self.names]
        texts = [", ".join(name for name in row if name.strip())[:MAX_DESCRIPTION_CHARS] for row in beams]
        return [prefix + text if text else "" for text in texts]


@torch.inference_mode()
def detect_named_boxes(model: OpenDetModel, images: list[Tensor], config: OpenDetInferenceConfig) -> list[NamedBoxes]:
    """images: B × (3, H, W) float in [0, 1] → per image its queries (the `max_boxes` most object-like, or all when
    0, as the released code keeps them), named by beam search."""
    output = model(images)
    final = output.layers[-1]
    prompts = model.prompts(output)
    kept = []
    for image, ((height, width), (frame_height, frame_width)) in enumerate(zip(output.image_sizes,
                                                                               output.box_frames)):
        valid = ~output.padding[image]
        objectness = final.binary_logits[image][valid].sigmoid()
        keep = objectness.argsort(descending=True)[: config.max_boxes or None]
        scale = final.boxes.new_tensor([frame_width, frame_height, frame_width, frame_height])
        boxes = box_convert(final.boxes[image][valid][keep], "cxcywh", "xyxy") * scale
        boxes = clip_boxes_to_image(boxes, (height, width))  # a centre ± half a side can leave the image
        kept.append((boxes, objectness[keep], prompts[image][valid][keep]))
    # One beam search for the whole batch's boxes: generate's per-call overhead dominates at a few dozen prompts.
    beams = iter(model.name_generator.generate(torch.cat([prompt for _, _, prompt in kept])))
    results = []
    for boxes, objectness, image_prompts in kept:
        image_beams = [next(beams) for _ in range(len(image_prompts))]
        results.append(NamedBoxes(boxes, objectness, [row[0] for row in image_beams], image_beams))
    return results


def nearest_categories(name_embeddings: Tensor, category_embeddings: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Cosine kNN with faiss (inner product of L2-normalised rows): (N, D), (C, D) → similarities (N, k'),
    category indices (N, k'), k' = min(k, C)."""
    index = faiss.IndexFlatIP(category_embeddings.shape[1])
    index.add(np.ascontiguousarray(category_embeddings.detach().cpu().float().numpy()))
    query = np.ascontiguousarray(name_embeddings.detach().cpu().float().numpy())
    similarities, indices = index.search(query, min(k, category_embeddings.shape[0]))
    return torch.from_numpy(similarities), torch.from_numpy(indices).long()


def category_weights(name_embeddings: Tensor, category_embeddings: Tensor, k: int, mapping: str = "released",
                     temperature: float = 100.0) -> tuple[Tensor, Tensor]:
    """(N, D), (C, D) L2-normalised → per box its k' = min(k, C) best categories: weights (N, k') in [0, 1] and
    category indices (N, k'), best first; a detection scores sqrt(objectness · weight).

    released (Open-Det2 code): weight = cos clamped to [0, 1], the k nearest by faiss. softmax (GenerateU):
    weight = softmax_c(τ·cos)·cos over all C categories, the k largest."""
    if mapping == "released":
        similarities, indices = nearest_categories(name_embeddings, category_embeddings, k)
        return similarities.clamp(0.0, 1.0), indices
    if mapping != "softmax":
        raise ValueError(f"opendet.inference.mapping must be released or softmax, got {mapping!r}")
    cosines = name_embeddings.detach().cpu().float() @ category_embeddings.detach().cpu().float().T
    weights = (cosines * temperature).softmax(dim=-1) * cosines.clamp(0.0, 1.0)
    return weights.topk(min(k, category_embeddings.shape[0]), dim=-1)


def name_detections(named: NamedBoxes, name_encoder: NameEncoder, category_embeddings: Tensor,
                    config: OpenDetInferenceConfig) -> dict[str, Tensor]:
    """One image → {boxes (M, 4), scores (M,), labels (M,) category index, top1 (K,)}: each named box once per top
    category (`config.top_classes`), score = sqrt(objectness · weight) (Open-Det / GenerateU evaluation; weight:
    `category_weights` under `config.mapping`); `top1` is each box's best category, −1 for a box with no name (no
    name is no detection). The text encoder embeds `named.descriptions(config.join_beams, config.name_prefix)`."""
    texts = named.descriptions(config.join_beams, config.name_prefix)
    named_rows = [row for row, text in enumerate(texts) if text]
    top1 = torch.full((len(texts),), -1, dtype=torch.long)
    if not named_rows:
        empty = torch.zeros(0)
        return {"boxes": torch.zeros(0, 4), "scores": empty, "labels": empty.long(), "top1": top1}
    weights, labels = category_weights(name_encoder([texts[row] for row in named_rows]), category_embeddings,
                                       config.top_classes, config.mapping, config.mapping_temperature)
    rows = torch.as_tensor(named_rows)
    top1[rows] = labels[:, 0]
    objectness = named.objectness.detach().cpu().float()[rows, None]
    scores = (objectness * weights).sqrt()
    boxes = named.boxes.detach().cpu().float()[rows, None, :].expand(-1, labels.shape[1], -1)
    return {"boxes": boxes.reshape(-1, 4), "scores": scores.reshape(-1), "labels": labels.reshape(-1),
            "top1": top1}


def best_beam_categories(named: NamedBoxes, name_encoder: NameEncoder, category_embeddings: Tensor,
                         prefix: str = "") -> Tensor:
    """(K,) per box the category index nearest (cosine) to its best beam alone, `prefix` + name, in
    `name_encoder`'s space; −1 for a box with no name. This is the box's generated name, where `name_detections`
    embeds what the AP mapping embeds (every beam joined, under the released evaluation)."""
    texts = named.descriptions(join_beams=False, prefix=prefix)
    named_rows = [row for row, text in enumerate(texts) if text]
    categories = torch.full((len(texts),), -1, dtype=torch.long)
    if named_rows:
        _, nearest = nearest_categories(name_encoder([texts[row] for row in named_rows]), category_embeddings, 1)
        categories[torch.as_tensor(named_rows)] = nearest[:, 0]
    return categories


def cached(encoder: NameEncoder) -> NameEncoder:
    """Generated names repeat a lot ("circle" thousands of times); embed each distinct name once."""
    memory: dict[str, Tensor] = {}

    def encode(names: list[str]) -> Tensor:
        new = sorted({name for name in names if name not in memory})
        if new:
            memory.update(zip(new, encoder(new)))
        return torch.stack([memory[name] for name in names])

    return encode
