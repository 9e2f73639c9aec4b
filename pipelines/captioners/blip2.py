"""`blip2` captioner: transformers BLIP-2 from a local directory on crops re-cut from the images.

Unlike ClipCap it cannot caption from the stored CLIP embedding (it has its own ViT), so each image is decoded once
and all its regions are cropped from that array and captioned together with the rest of the batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.captioners.base import CaptionFailure, CaptionResult, ImageRegions, register_captioner  # noqa: E402
from vlm.images import PathEscapeError, resolve_image_path  # noqa: E402
from pipelines.crops import crop_window, cut  # noqa: E402
from vlm.images import ImageReadError, load_image  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Blip2CaptionerConfig:
    model_dir: str = ""  # save_pretrained directory of Blip2ForConditionalGeneration + Blip2Processor
    image_root: str = ""  # where the store's images.file_name paths live
    prompt: str | None = None  # e.g. "a photo of"; None: unconditional captioning
    crop_mode: Literal["tight", "square", "context"] = "tight"
    context_scale: float = 1.5
    max_new_tokens: int = 20
    num_beams: int = 1
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "cpu"


class Blip2RegionCaptioner:
    name = "blip2"

    def __init__(self, model, processor, config: Blip2CaptionerConfig):
        self.model = model.eval()
        self.processor = processor
        self.config = config

    def _crops(self, item: ImageRegions) -> list[Image.Image] | CaptionFailure:
        try:
            path = resolve_image_path(self.config.image_root, item.file_name)
            image = load_image(path)
        except ImageReadError as error:
            return CaptionFailure(error.kind, f"image {item.image_id}: {error}")
        except PathEscapeError as error:
            return CaptionFailure("path_escape", f"image {item.image_id}: {error}")
        windows = [crop_window(box, self.config.crop_mode, image.width, image.height, self.config.context_scale)
                   for box in item.boxes.tolist()]
        return [Image.fromarray(np.ascontiguousarray(cut(image.pixels, w))) for w in windows]

    def caption(self, batch: Sequence[ImageRegions]) -> list[CaptionResult]:
        """B images → captions of all their regions, generated in one batch; an unreadable image → CaptionFailure."""
        crops = [self._crops(item) for item in batch]
        flat = [c for per_image in crops if not isinstance(per_image, CaptionFailure) for c in per_image]
        texts = self._generate(flat) if flat else []
        results: list[CaptionResult] = []
        position = 0
        for per_image in crops:
            if isinstance(per_image, CaptionFailure):
                results.append(per_image)
                continue
            results.append(texts[position:position + len(per_image)])
            position += len(per_image)
        return results

    @torch.inference_mode()
    def _generate(self, crops: list[Image.Image]) -> list[str]:
        # Decoder-only LMs (OPT) return their input ids before the caption, so they always get a text input (the
        # prompt or "") whose length is then cut off; encoder-decoders (Flan-T5) return only the new tokens.
        decoder_only = self.model.config.use_decoder_only_language_model
        prompt = self.config.prompt
        text = [prompt or ""] * len(crops) if prompt or decoder_only else None
        inputs = self.processor(images=crops, text=text, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(DTYPES[self.config.dtype])
        output = self.model.generate(**inputs, max_new_tokens=self.config.max_new_tokens,
                                     num_beams=self.config.num_beams, do_sample=False)
        if decoder_only:
            output = output[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in self.processor.batch_decode(output, skip_special_tokens=True)]


def check_blip2_files(config: Blip2CaptionerConfig) -> None:
    """Raise, naming the config key, when the model folder or the image root is missing."""
    if not config.model_dir or not (Path(config.model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"BLIP-2 directory {config.model_dir!r} has no config.json "
                                f"(config key captioner.blip2.model_dir)")
    if not config.image_root or not Path(config.image_root).is_dir():
        raise FileNotFoundError(f"image root {config.image_root!r} not found (config key captioner.blip2.image_root)")


@register_captioner("blip2")
def build_blip2(config: Blip2CaptionerConfig) -> Blip2RegionCaptioner:
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    check_blip2_files(config)
    processor = Blip2Processor.from_pretrained(config.model_dir)
    model = Blip2ForConditionalGeneration.from_pretrained(config.model_dir, dtype=DTYPES[config.dtype])
    return Blip2RegionCaptioner(model.to(config.device), processor, config)
