"""`blip2` captioner: BLIP-2 (vlm.blip2) on crops re-cut from the images.

Unlike ClipCap it cannot caption from the stored CLIP embedding (it has its own ViT), so each image is decoded once
and all its regions are cropped from that array and captioned together with the rest of the batch.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from pipelines.captioners.base import CaptionFailure, CaptionResult, ImageRegions, register_captioner
from pipelines.captioners.image_views import answer_by_image, decoded_image
from pipelines.crops import crop_window, cut
from pipelines.pseudo_labels_config import Blip2Section
from vlm.blip2 import Blip2Captioner
from vlm.hub import ModelFiles, resolve_pretrained_dir


@register_captioner("blip2")
@dataclasses.dataclass(eq=False)
class Blip2RegionCaptioner:
    captioner: Blip2Captioner
    section: Blip2Section  # resolved (resolve_blip2): where the images are, how boxes are cut, how to generate
    name = "blip2"

    @classmethod
    def from_config(cls, section: Blip2Section) -> "Blip2RegionCaptioner":
        section, _ = resolve_blip2(section)
        return cls(Blip2Captioner.from_dir(section.model_dir, section.dtype, section.device), section)

    def _crops(self, item: ImageRegions) -> list[Image.Image] | CaptionFailure:
        image = decoded_image(self.section.image_root, item)
        if isinstance(image, CaptionFailure):
            return image
        windows = [crop_window(box, self.section.crop_mode, image.width, image.height,
                                self.section.context_scale)
                   for box in item.boxes.tolist()]
        return [Image.fromarray(np.ascontiguousarray(cut(image.pixels, w))) for w in windows]

    def caption(self, batch: Sequence[ImageRegions]) -> list[CaptionResult]:
        """B images → captions of all their regions, generated in one batch; unreadable image → CaptionFailure."""
        return answer_by_image([self._crops(item) for item in batch], lambda crops: self.captioner.caption(
            crops, self.section.prompt, self.section.max_new_tokens, self.section.num_beams))


def resolve_blip2(section: Blip2Section) -> tuple[Blip2Section, tuple[ModelFiles, ...]]:
    """The section with `model_dir` as a local folder (a save_pretrained folder, or a repo id such as
    `Salesforce/blip2-opt-2.7b` fetched into the Hugging Face cache), and where it came from; an error naming the
    config key when the model or the image root is missing (called before any work)."""
    model = resolve_pretrained_dir(section.model_dir, "captioner.blip2.model_dir")
    if not section.image_root or not Path(section.image_root).is_dir():
        raise FileNotFoundError(f"image root {section.image_root!r} not found "
                                f"(config key captioner.blip2.image_root)")
    return dataclasses.replace(section, model_dir=model.path), (model,)
