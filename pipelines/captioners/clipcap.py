"""`clipcap` captioner: ClipCap (vlm.clipcap) on the STORED CLIP region embeddings (no re-crop, no second CLIP pass)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from pipelines.captioners.base import ImageRegions, register_captioner
from pipelines.pseudo_labels_config import ClipCapSection
from vlm.hub import ModelFiles, resolve_file, resolve_pretrained_dir


@register_captioner("clipcap")
class ClipCapRegionCaptioner:
    name = "clipcap"

    def __init__(self, captioner, *, method: Literal["beam", "greedy"], beam_size: int, max_tokens: int,
                 unit_prefix: bool):
        self.captioner = captioner  # vlm.clipcap.ClipCapCaptioner
        self.method = method
        self.beam_size = beam_size
        self.max_tokens = max_tokens
        self.unit_prefix = unit_prefix  # the checkpoint was trained on unit-length embeddings, not raw output

    @classmethod
    def from_config(cls, section: ClipCapSection) -> "ClipCapRegionCaptioner":
        # vlm.clipcap imports transformers: imported when a ClipCap is built, so importing this module stays cheap.
        from vlm.clipcap import ClipCapCaptioner

        from vlm.clipcap import recorded_normalize_prefix

        section, _ = resolve_clipcap(section)
        # The model itself never rescales: `prefixes` hands it exactly what the checkpoint was trained on.
        captioner = ClipCapCaptioner.from_paths(section.checkpoint, section.gpt_dir, stop_token=section.stop_token,
                                                mapping_type=section.mapping_type, normalize_prefix=False
                                                ).to(section.device, section.dtype)
        recorded, record = recorded_normalize_prefix(section.checkpoint)
        unit = trained_on_unit_prefixes(section.normalize_prefix, captioner.model.config.mapping_type, recorded,
                                        record)
        return cls(captioner, method=section.method, beam_size=section.beam_size, max_tokens=section.max_tokens,
                   unit_prefix=unit)

    def caption(self, batch: Sequence[ImageRegions]) -> list[list[str]]:
        """B images → captions of all their regions, generated in one batch over every region of every image."""
        sizes = [len(item.region_ids) for item in batch]
        if not sum(sizes):
            return [[] for _ in batch]
        stacked = torch.from_numpy(np.concatenate([prefixes(item, self.unit_prefix) for item in batch]))
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


def trained_on_unit_prefixes(normalize_prefix: bool | None, mapping_type: str, recorded: bool | None = None,
                             record: Path | None = None) -> bool:
    """Whether a checkpoint was trained on unit-length CLIP embeddings (official `--normalize_prefix`).

    The convention travels with the checkpoint: a training record beside its weights (`recorded`, read from
    `record` by vlm.clipcap.recorded_normalize_prefix; our ShapesOV teacher's manifest) decides, and a
    `captioner.clipcap.normalize_prefix` that contradicts it is refused. Without a record, the config's value, else
    the official checkpoints' convention for the mapper type: CLIP_prefix_caption's predict.py and
    notebooks/clip_prefix_captioning_inference.ipynb give the MLP checkpoints (COCO, Conceptual Captions) the raw
    `encode_image` output; its notebooks/transformer_inference.ipynb divides it by its norm for the transformer one.
    """
    if recorded is not None:
        if normalize_prefix is not None and normalize_prefix != recorded:
            raise ValueError(f"captioner.clipcap.normalize_prefix={str(normalize_prefix).lower()} contradicts how the "
                             f"checkpoint was trained (normalize_prefix: {str(recorded).lower()} in {record}); leave "
                             "it null to follow the record")
        return recorded
    return mapping_type == "transformer" if normalize_prefix is None else normalize_prefix


def prefixes(item: ImageRegions, unit: bool) -> np.ndarray:
    """(R, D) float32 ClipCap inputs of one image's regions: the stored unit-length embeddings as they are, or the raw
    encode_image output restored as embedding x embedding_norm (float16 storage: relative error below 1e-3)."""
    embeddings = item.embeddings.astype(np.float32, copy=False)
    return embeddings if unit else embeddings * item.embedding_norms.astype(np.float32)[:, None]



def clipcap_input_size(checkpoint: str) -> int:
    """The CLIP embedding width an official-layout ClipCap checkpoint takes (its mapper's input), read from one
    tensor's shape: safetensors' header, or a memory-mapped torch file, so a large checkpoint costs no full read."""
    names = ("clip_project.model.0.weight", "clip_project.linear.weight")  # MLP mapper, transformer mapper
    if checkpoint.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(checkpoint, framework="pt") as handle:
            keys = set(handle.keys())
            found = next((name for name in names if name in keys), None)
            shape = handle.get_slice(found).get_shape() if found else None
    else:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a checkpoint of the old (non-zip) torch format cannot be memory-mapped
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        found = next((name for name in names if isinstance(state, dict) and name in state), None)
        shape = tuple(state[found].shape) if found else None
    if shape is None:
        raise ValueError(f"{checkpoint} (config key captioner.clipcap.checkpoint) is not a ClipCap checkpoint in the "
                         f"official layout: it has neither {names[0]} (MLP mapper) nor {names[1]} (transformer)")
    return int(shape[1])
