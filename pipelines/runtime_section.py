"""How a Beam job runs, as opposed to what it computes: the `runtime` section of both stage configs
(configs/shapes/extract_features.yaml, configs/shapes/pseudo_labels.yaml). It is left out of shard fingerprints, so changing it
never recomputes a shard."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vlm.images import DEFAULT_MAX_IMAGE_PIXELS, HIGHEST_MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class RuntimeSection:
    device: Literal["auto", "cuda", "cpu"] = "auto"
    # RunInference batch bounds of the stage's model: crops for the CLIP image tower, images for a captioner.
    min_batch_size: int = 8
    max_batch_size: int = 64
    large_model: bool = False  # one model per machine, shared across worker processes
    # Failure rows over the stage's inputs (extract-features: input images; pseudo-labels: pseudo boxes) above
    # which the job fails with exit code 3, after committing everything it computed.
    max_failure_rate: float = 0.01
    # Pending shards per pipeline run on the DirectRunner. Grouping results back into shards is a barrier, and the
    # DirectRunner holds a barrier's input in memory: running N shards at a time bounds memory by N shards, not the
    # dataset. Other runners spill their shuffles to disk and get every pending shard in one pipeline. 0 = all at once.
    shards_per_run: int = 4
    # Images whose header claims more pixels than this are failure rows (`too_large`), refused before any pixel is
    # decoded: a decompression bomb (a small file claiming 40000x40000) would otherwise take gigabytes. Default PIL's
    # own limit (vlm/images.py); at most twice it, above which PIL refuses to decode anyway.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch_size <= self.max_batch_size:
            raise ValueError(f"runtime.min_batch_size={self.min_batch_size} and runtime.max_batch_size="
                             f"{self.max_batch_size} must satisfy 1 <= min <= max")
        if self.max_failure_rate < 0.0:  # above 1: the gate never closes
            raise ValueError(f"runtime.max_failure_rate must be >= 0, got {self.max_failure_rate}")
        if self.shards_per_run < 0:
            raise ValueError(f"runtime.shards_per_run must be >= 0 (0 = all at once), got {self.shards_per_run}")
        if not 1 <= self.max_image_pixels <= HIGHEST_MAX_IMAGE_PIXELS:
            raise ValueError(f"runtime.max_image_pixels must be within 1 .. {HIGHEST_MAX_IMAGE_PIXELS} (twice PIL's "
                             f"decompression-bomb limit), got {self.max_image_pixels}")
