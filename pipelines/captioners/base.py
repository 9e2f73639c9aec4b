"""The one captioner interface: regions of several images in, one caption per region out.

A captioner gets whole images' worth of regions at once (`ImageRegions`), so each can batch the way its model
needs: ClipCap stacks the stored region embeddings of every image of the batch, BLIP-2 decodes each image once and
captions all its crops together, `given` looks captions up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class ImageRegions:
    """The pseudo boxes of one image, in region order."""

    image_id: int
    file_name: str
    region_ids: tuple[int, ...]
    boxes: np.ndarray  # (R, 4) float32 xyxy image pixels
    embeddings: np.ndarray  # (R, D) float32 stored CLIP region embeddings, unit length
    embedding_norms: np.ndarray  # (R,) float32 raw encode_image lengths: embeddings x norms = the raw output


@dataclass(frozen=True)
class CaptionFailure:
    """Why none of an image's regions could be captioned (e.g. its file is missing); becomes failures rows."""

    kind: str
    message: str


CaptionResult = list[str] | CaptionFailure


class Captioner(Protocol):
    name: str

    @classmethod
    def from_config(cls, section) -> "Captioner":
        """The captioner built from its own config section (captioner.<name>), files checked first."""

    def caption(self, batch: Sequence[ImageRegions]) -> list[CaptionResult]:
        """B images → B results: captions, one per region in region order ("" for none), or a CaptionFailure."""


# name → captioner class; filled by the modules that define captioners.
CAPTIONERS: dict[str, type[Captioner]] = {}


def register_captioner(name: str) -> Callable[[type[Captioner]], type[Captioner]]:
    def register(captioner: type[Captioner]) -> type[Captioner]:
        CAPTIONERS[name] = captioner
        return captioner
    return register
