"""Settings of the pseudo-labels stage (configs/pseudo_labels.yaml); loaded with schemas.config."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from pipelines.captioners import CaptionerConfig
from pipelines.nouns import NounConfig
from pipelines.pseudo_label_pick import ScoreConfig
from pipelines.runtime_section import RuntimeSection
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
class PickSection:
    """How the noun + pick step batches: like `runtime`, left out of shard fingerprints."""

    batch_size: int = 64  # images per spaCy + CLIP-text batch


# Failure rows / pseudo boxes above which the job fails. A caption with no noun left after the stop words is a
# dead letter now and then (the ShapesOV demo: 0 of 8794 pseudo boxes); one box in twenty means a broken captioner.
MAX_FAILURE_RATE = 0.05


def _pseudo_labels_runtime() -> RuntimeSection:
    # The captioner batches whole images, all their regions captioned together: fewer per batch than crops.
    return RuntimeSection(min_batch_size=4, max_batch_size=32, max_failure_rate=MAX_FAILURE_RATE)


@dataclass(frozen=True)
class PseudoLabelsConfig:
    sources: tuple[str, ...] = ("proposal",)  # region sources that get pseudo labels (the pseudo boxes)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    nouns: NounConfig = field(default_factory=NounConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    text: ClipTextSection = field(default_factory=ClipTextSection)
    pick: PickSection = field(default_factory=PickSection)
    runtime: RuntimeSection = field(default_factory=_pseudo_labels_runtime)

    def content_hash(self) -> str:
        """Hash of the settings that change what is computed: everything but `pick` and `runtime`, left out
        altogether so a knob added to them later changes no fingerprint."""
        return config_hash(dataclasses.replace(self, pick=None, runtime=None))
