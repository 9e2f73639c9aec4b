"""`vlm` labeler: an instruction-following image-text model (vlm.image_text_model) asked about each pseudo box.

Each image is decoded once; each of its boxes becomes a view and a prompt (pipelines.region_prompts: the crop with
context, or the whole image with the box drawn and its coordinates in the prompt) asking for the object's name as
a short noun phrase. The answers of every box of every image in the batch are generated together and come back as
captions, so noun parsing and the CLIP pick give them the same meaning as ClipCap's.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from PIL import Image

from pipelines.captioners.base import CaptionFailure, CaptionResult, ImageRegions, register_captioner
from pipelines.captioners.image_views import answer_by_image, decoded_image
from pipelines.pseudo_labels_config import VlmSection
from pipelines.region_prompts import RegionPromptStyle, check_template, region_view
from vlm.hub import ModelFiles, resolve_pretrained_dir

MODEL_KEY = "captioner.vlm.model"


def region_prompt_style(section: VlmSection) -> RegionPromptStyle:
    """The region half of the section: how a box becomes a view and a prompt."""
    return RegionPromptStyle(region_prompt=section.region_prompt, crop_template=section.crop_prompt,
                             box_template=section.box_prompt, crop_mode=section.crop_mode,
                             context_scale=section.context_scale, box_units=section.box_units,
                             box_colour=section.box_colour, box_line_width=section.box_line_width)


@register_captioner("vlm")
@dataclasses.dataclass(eq=False)
class VlmRegionCaptioner:
    model: object  # vlm.image_text_model.ImageTextModel (imported where the labeler is built: it pulls transformers)
    section: VlmSection  # resolved (resolve_vlm): where the images are, how boxes become prompts, how to generate
    name = "vlm"

    def __post_init__(self):
        self.style = region_prompt_style(self.section)

    @classmethod
    def from_config(cls, section: VlmSection) -> "VlmRegionCaptioner":
        # vlm.image_text_model imports transformers: imported when the labeler is built, so this module stays cheap.
        from vlm.image_text_model import ImageTextModel

        section, _ = resolve_vlm(section)
        model = ImageTextModel.from_dir(section.model, dtype=section.dtype, device=section.device or "auto",
                                        chat_template=section.chat_template)
        return cls(model, section)

    def _views(self, item: ImageRegions) -> list[tuple[Image.Image, str]] | CaptionFailure:
        image = decoded_image(self.section.image_root, item)
        if isinstance(image, CaptionFailure):
            return image
        return [region_view(image.pixels, box, self.style) for box in item.boxes.tolist()]

    def caption(self, batch: Sequence[ImageRegions]) -> list[CaptionResult]:
        """B images → the answers for all their regions, generated together; unreadable image → CaptionFailure."""
        return answer_by_image([self._views(item) for item in batch], lambda views: self.model.answer(
            [image for image, _ in views], [prompt for _, prompt in views], self.section.max_new_tokens,
            self.section.num_beams, self.section.regions_per_batch))


def resolve_vlm(section: VlmSection) -> tuple[VlmSection, tuple[ModelFiles, ...]]:
    """The section with `model` as a local folder (a save_pretrained folder, or a repo id fetched into the Hugging
    Face cache) and where it came from. Before any work: an error naming the config key when the model is missing
    or is not an image-text-to-text model, the image root is missing, or a prompt template has unknown fields."""
    from vlm.image_text_model import check_image_text_model

    check_template(section.crop_prompt, "captioner.vlm.crop_prompt")
    check_template(section.box_prompt, "captioner.vlm.box_prompt")
    model = resolve_pretrained_dir(section.model, MODEL_KEY)
    check_image_text_model(model.path, MODEL_KEY)
    if not section.image_root or not Path(section.image_root).is_dir():
        raise FileNotFoundError(f"image root {section.image_root!r} not found (config key captioner.vlm.image_root)")
    return dataclasses.replace(section, model=model.path), (model,)
