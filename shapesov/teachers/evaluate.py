"""Measurements of the teachers: CLIP zero-shot shape accuracy and ClipCap's right-shape-word rate, per class; on
crops of boxes on nothing, the share ClipCap captions with no object noun (parsed as the pseudo-labels stage parses
captions) and how well CLIP's best shape-prompt cosine tells object crops from crops of nothing."""
from __future__ import annotations

import re

import open_clip
import torch
import torch.nn.functional as F

from pipelines.nouns import NounExtractor
from pipelines.roc_auc import roc_auc
from vlm.clipcap import ClipCapCaptioner
from shapesov.classes import SHAPE_NAMES
from shapesov.teachers.crops import BOX_KINDS, CropBank, to_model_input


@torch.inference_mode()
def encode_crops(model: open_clip.CLIP, bank: CropBank, batch_size: int = 512) -> torch.Tensor:
    """(N, D) float32 L2-normalised image embeddings of the bank's crops (model's own normalisation constants)."""
    mean, std = model.visual.image_mean or open_clip.OPENAI_DATASET_MEAN, \
        model.visual.image_std or open_clip.OPENAI_DATASET_STD
    chunks = [model.encode_image(to_model_input(bank.pixels[i:i + batch_size], mean, std))
              for i in range(0, len(bank), batch_size)]
    return F.normalize(torch.cat(chunks), dim=-1)


@torch.inference_mode()
def class_text_embeddings(model: open_clip.CLIP, tokenizer, prompt: str,
                          names: tuple[str, ...] = SHAPE_NAMES) -> torch.Tensor:
    """(K, D) float32 L2-normalised text embeddings of `prompt` filled with each class name."""
    return F.normalize(model.encode_text(tokenizer([prompt.format(n) for n in names])), dim=-1)


def per_class_rate(hits: torch.Tensor, shape_ids: torch.Tensor) -> dict[str, float]:
    """Mean of boolean `hits` (N,) per true class; classes without samples are left out."""
    return {name: float(hits[shape_ids == k].float().mean()) for k, name in enumerate(SHAPE_NAMES)
            if bool((shape_ids == k).any())}


def zero_shot_accuracy(model: open_clip.CLIP, tokenizer, bank: CropBank, prompt: str) -> dict[str, float]:
    """Per-class top-1 accuracy of nearest-prompt classification over all 8 shape names."""
    predictions = (encode_crops(model, bank) @ class_text_embeddings(model, tokenizer, prompt).T).argmax(dim=-1)
    return per_class_rate(predictions == bank.shape_ids, bank.shape_ids)


def names_shape(caption: str, shape: str) -> bool:
    """Does the caption contain the shape's name as a word (a plural counts)?"""
    return re.search(rf"\b{re.escape(shape)}s?\b", caption.lower()) is not None


def caption_shape_rate(captioner: ClipCapCaptioner, embeddings: torch.Tensor, shape_ids: torch.Tensor,
                       beam_size: int, max_tokens: int) -> tuple[dict[str, float], list[str]]:
    """Per-class share of beam-search captions that name the right shape; also returns the captions."""
    captions = captioner.caption(embeddings, method="beam", beam_size=beam_size, max_tokens=max_tokens)
    hits = torch.tensor([names_shape(c, SHAPE_NAMES[int(s)]) for c, s in zip(captions, shape_ids)])
    return per_class_rate(hits, shape_ids), captions


def share_without_object_noun(captions: list[str], kind_ids: torch.Tensor, extractor: NounExtractor
                              ) -> tuple[float, dict[str, float]]:
    """The share of `captions` in which the noun parser finds no candidate label (the pseudo-labels stage keeps such
    a box with no label), over all and per box kind (kind_ids: (N,) long index into crops.BOX_KINDS)."""
    empty = torch.tensor([not found for found in extractor.candidates(captions)], dtype=torch.float32)
    return float(empty.mean()), {kind: float(empty[kind_ids == k].mean()) for k, kind in enumerate(BOX_KINDS)
                                 if bool((kind_ids == k).any())}


def object_vs_nothing_auc(model: open_clip.CLIP, tokenizer, objects: CropBank, nothing: CropBank,
                          prompt: str) -> float | None:
    """ROC AUC of each crop's best cosine to a shape prompt, object crops against crops of nothing: the cosine of
    the picked label is what the pseudo-label score is made of."""
    text = class_text_embeddings(model, tokenizer, prompt)
    best = [(encode_crops(model, bank) @ text.T).max(dim=-1).values.tolist() for bank in (objects, nothing)]
    return roc_auc(*best)
