"""`clipcap` captioner: ClipCap (vlm.clipcap) on the STORED CLIP region embeddings (no re-crop, no second CLIP pass)."""
from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import numpy as np
import torch

from pipelines.captioners.base import ImageRegions, register_captioner
from pipelines.pseudo_labels_config import ClipCapSection
from vlm.hub import ModelFiles, resolve_file, resolve_pretrained_dir


@register_captioner("clipcap")
class ClipCapRegionCaptioner:
    name = "clipcap"

    def __init__(self, captioner, *, method: Literal["beam", "greedy"], beam_size: int, max_tokens: int):
        self.captioner = captioner  # vlm.clipcap.ClipCapCaptioner
        self.method = method
        self.beam_size = beam_size
        self.max_tokens = max_tokens

    @classmethod
    def from_config(cls, section: ClipCapSection) -> "ClipCapRegionCaptioner":
        # vlm.clipcap imports transformers: imported when a ClipCap is built, so importing this module stays cheap.
        from vlm.clipcap import ClipCapCaptioner

        section, _ = resolve_clipcap(section)
        captioner = ClipCapCaptioner.from_paths(section.checkpoint, section.gpt_dir, stop_token=section.stop_token,
                                                mapping_type=section.mapping_type,
                                                normalize_prefix=section.normalize_prefix)
        return cls(captioner, method=section.method, beam_size=section.beam_size, max_tokens=section.max_tokens)

    def caption(self, batch: Sequence[ImageRegions]) -> list[list[str]]:
        """B images → captions of all their regions, generated in one batch over every region of every image."""
        sizes = [len(item.region_ids) for item in batch]
        if not sum(sizes):
            return [[] for _ in batch]
        stacked = torch.from_numpy(np.concatenate([item.embeddings for item in batch]).astype(np.float32))
        captions = self.captioner.caption(stacked, method=self.method, beam_size=self.beam_size,
                                          max_tokens=self.max_tokens, batch_size=max(len(stacked), 1))
        ends = np.cumsum(sizes)
        return [captions[end - size:end] for size, end in zip(sizes, ends)]


def resolve_clipcap(section: ClipCapSection) -> tuple[ClipCapSection, tuple[ModelFiles, ...]]:
    """The section with its files as local paths, and where they came from; an error naming the config key when one
    cannot be found (called before any work). The checkpoint is a file or `hf-hub:org/name/<file>`; `gpt_dir` a
    folder or a repo id such as `openai-community/gpt2`, of which only the config and tokenizer are fetched: the
    GPT-2 weights are in the ClipCap checkpoint."""
    checkpoint = resolve_file(section.checkpoint, "captioner.clipcap.checkpoint")
    gpt = resolve_pretrained_dir(section.gpt_dir, "captioner.clipcap.gpt_dir", weights=False)
    return dataclasses.replace(section, checkpoint=checkpoint.path, gpt_dir=gpt.path), (checkpoint, gpt)
