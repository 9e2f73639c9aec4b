"""Settings of the pseudo-labels stage (configs/pseudo_labels.yaml); loaded with schemas.config."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from pipelines.captioners import CaptionerConfig
from pipelines.nouns import NounConfig
from pipelines.pseudo_label_pick import ScoreConfig
from schemas.config import config_hash


@dataclass(frozen=True)
class ClipTextSection:
    """The CLIP whose text tower embeds the candidates. Left empty, it is the CLIP and prompt ensemble that
    extract-features used (read from the store's manifest), so text and region embeddings share one space."""

    clip: str | None = None  # `local-dir:<folder>` or an architecture name; None: the store's
    checkpoint: str | None = None
    model_config_dir: str | None = None
    prompts: Literal["single", "imagenet80"] | None = None  # None: the store's extract-features vocab.prompts
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"


@dataclass(frozen=True)
class RuntimeSection:
    """How the job runs, not what it computes: excluded from shard fingerprints."""

    device: Literal["auto", "cuda", "cpu"] = "auto"
    min_batch_size: int = 4  # images per captioner batch (all their regions are captioned together)
    max_batch_size: int = 32
    pick_batch_size: int = 64  # images per spaCy + CLIP-text batch
    large_model: bool = False  # one captioner per machine, shared across worker processes


@dataclass(frozen=True)
class PseudoLabelsConfig:
    sources: tuple[str, ...] = ("proposal",)  # region sources that get pseudo labels (the pseudo boxes)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    nouns: NounConfig = field(default_factory=NounConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    text: ClipTextSection = field(default_factory=ClipTextSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)

    def content_hash(self) -> str:
        """Hash of the settings that change what is computed (everything except `runtime`)."""
        return config_hash(dataclasses.replace(self, runtime=RuntimeSection()))
