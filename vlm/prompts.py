"""Prompt ensembles for class-name text embeddings (CLIP paper, Radford et al. 2021, Sec. 3.1.4).

Text embedding of a name = mean over templates of the L2-normalised template embeddings, renormalised.
"""
from __future__ import annotations

import numpy as np
import torch

from vlm.text_tower import PromptEncoder

SINGLE = ("a photo of a {}.",)

# The 80 ImageNet templates released with CLIP (prompt engineering notebook of the CLIP repository).
IMAGENET80 = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

ENSEMBLES = {"single": SINGLE, "imagenet80": IMAGENET80}


def templates(name: str) -> tuple[str, ...]:
    if name not in ENSEMBLES:
        raise ValueError(f"unknown prompt ensemble {name!r} (config key vocab.prompts); known: {sorted(ENSEMBLES)}")
    return ENSEMBLES[name]


def text_embeddings(model, tokenizer, names: list[str], ensemble: str, device: torch.device | str = "cpu",
                    batch_size: int = 1024) -> np.ndarray:
    """names → (C, D) float32, each row the renormalised mean of the normalised template embeddings; every prompt
    in batches of `batch_size` (vlm.text_tower.PromptEncoder). StoreTextEncoder keeps one PromptEncoder across
    calls; this builds one per call."""
    if not names:
        return np.zeros((0, 0), dtype=np.float32)
    return PromptEncoder(model, tokenizer, device, batch_size).ensemble(list(names), templates(ensemble))
