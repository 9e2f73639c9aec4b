"""`clipcap` captioner: ClipCap on the STORED CLIP region embeddings (no re-crop, no second CLIP pass)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from pipelines.captioners.base import ImageRegions, register_captioner


@dataclass(frozen=True)
class ClipCapCaptionerConfig:
    checkpoint: str = "data/teachers/clipcap/clipcap_mlp.pt"  # official ClipCap layout (.pt or .safetensors)
    gpt_dir: str = "data/teachers/clipcap/gpt2"  # local GPT-2 config + tokenizer directory
    mapping_type: Literal["mlp", "transformer"] | None = None  # None: read from the checkpoint's shapes
    # Official ClipCap `--normalize_prefix`. A no-op on our store, whose region embeddings are already unit length.
    normalize_prefix: bool = False
    method: Literal["beam", "greedy"] = "beam"
    beam_size: int = 5  # official ClipCap generate_beam default
    max_tokens: int = 20
    stop_token: str = "."  # official ClipCap stops at the first "."


class ClipCapRegionCaptioner:
    name = "clipcap"

    def __init__(self, captioner, config: ClipCapCaptionerConfig):
        self.captioner = captioner  # vlm.clipcap.ClipCapCaptioner
        self.config = config

    def caption(self, batch: Sequence[ImageRegions]) -> list[list[str]]:
        """B images → captions of all their regions, generated in one batch over every region of every image."""
        sizes = [len(item.region_ids) for item in batch]
        if not sum(sizes):
            return [[] for _ in batch]
        stacked = torch.from_numpy(np.concatenate([item.embeddings for item in batch]).astype(np.float32))
        captions = self.captioner.caption(stacked, method=self.config.method, beam_size=self.config.beam_size,
                                          max_tokens=self.config.max_tokens, batch_size=max(len(stacked), 1))
        ends = np.cumsum(sizes)
        return [captions[end - size:end] for size, end in zip(sizes, ends)]


def check_clipcap_files(config: ClipCapCaptionerConfig) -> None:
    """Raise, naming the config key, when a file the captioner needs is missing (called before any work)."""
    if not Path(config.checkpoint).is_file():
        raise FileNotFoundError(f"ClipCap checkpoint not found: {config.checkpoint} "
                                f"(config key captioner.clipcap.checkpoint)")
    if not (Path(config.gpt_dir) / "config.json").is_file():
        raise FileNotFoundError(f"GPT-2 directory {config.gpt_dir} has no config.json "
                                f"(config key captioner.clipcap.gpt_dir)")


@register_captioner("clipcap")
def build_clipcap(config: ClipCapCaptionerConfig) -> ClipCapRegionCaptioner:
    from vlm.clipcap import ClipCapCaptioner

    check_clipcap_files(config)
    captioner = ClipCapCaptioner.from_paths(config.checkpoint, config.gpt_dir, stop_token=config.stop_token,
                                            mapping_type=config.mapping_type,
                                            normalize_prefix=config.normalize_prefix)
    return ClipCapRegionCaptioner(captioner, config)
