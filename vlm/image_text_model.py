"""Instruction-following image-text models through transformers: `AutoModelForImageTextToText` + `AutoProcessor`
from a save_pretrained folder (Qwen2.5-VL, Idefics3 / SmolVLM, LLaVA, PaliGemma, Florence-2, ...), and batched
answers to (image, prompt) pairs.

A prompt becomes a user turn of the processor's own chat template (the image, then the text), or goes to the
processor as written when a model has no chat (PaliGemma, Florence-2 task prompts). Decoder-only models generate
after their prompt, so a batch is padded on the left; greedy or beam search, no sampling, in the model's dtype on
its device; an out-of-memory error halves the batch for this and every later call.

Importing this module registers vlm.open_clip_vision with transformers, so a LLaVA whose vision tower is an
open_clip CLIP (our ShapesOV teacher) loads like any other.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

import vlm.open_clip_vision  # noqa: F401 - registers the open_clip tower with transformers' Auto classes
from vlm.clip import DTYPES, resolve_device
from vlm.hub import ModelLoadError
from vlm.oom_backoff import BatchBackoff


def check_image_text_model(folder: str | Path, key: str) -> str:
    """The folder's model type when transformers builds it with AutoModelForImageTextToText; otherwise an error
    naming `key` (called before any work, so a captioning model or a text-only model is refused up front)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    config_file = Path(folder) / "config.json"
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"{config_file} is not a config transformers can read (config key {key}): "
                             f"{type(error).__name__}: {error}") from error
    if type(config) not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING:
        raise ModelLoadError(f"{folder} holds a {model_type!r} model, which is not an image-text-to-text model "
                             f"(AutoModelForImageTextToText cannot build it; config key {key})")
    return str(model_type)


class ImageTextModel:
    """(image, prompt) pairs → one answer each, generated in batches."""

    def __init__(self, model, processor, dtype: str = "fp32", chat_template: bool = True):
        self.model = model.eval()
        self.processor = processor
        self.dtype = DTYPES[dtype]
        self.encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        if not self.encoder_decoder:
            # A decoder-only model continues its prompt: pad on the left so every prompt ends where generation starts.
            processor.tokenizer.padding_side = "left"
        self.chat_template = chat_template
        if chat_template and not getattr(processor, "chat_template", None):
            raise ModelLoadError(f"{type(processor).__name__} has no chat template; set captioner.vlm.chat_template="
                                 f"false to pass prompts as written")
        self.batch_cap: int | None = None  # the batch size an out-of-memory error left, for every later call

    @classmethod
    def from_dir(cls, folder: str | Path, *, dtype: str = "fp32", device: str = "cpu", chat_template: bool = True
                 ) -> "ImageTextModel":
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(folder)
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=DTYPES[dtype])
        return cls(model.to(resolve_device(device)), processor, dtype, chat_template)

    def format(self, prompt: str) -> str:
        """The text the processor gets for one prompt: a user turn with the image, ready for the answer."""
        if not self.chat_template:
            return prompt
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True)

    @torch.inference_mode()
    def answer(self, images: list[Image.Image], prompts: list[str], max_new_tokens: int = 12, num_beams: int = 1,
               batch_size: int | None = None) -> list[str]:
        """N images and N prompts → N answers (stripped), `batch_size` pairs per `generate` (None: all at once)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        texts = [self.format(prompt) for prompt in prompts]
        batch_size = min(batch_size or len(images), self.batch_cap or len(images))
        backoff = BatchBackoff(batch_size, "vlm prompts per batch (captioner.vlm.regions_per_batch)")
        answers = [text for part in backoff.run(len(images), lambda start, stop: self._generate(
            images[start:stop], texts[start:stop], max_new_tokens, num_beams)) for text in part]
        if backoff.backoffs:
            self.batch_cap = backoff.size
        return answers

    def _generate(self, images: list[Image.Image], texts: list[str], max_new_tokens: int, num_beams: int
                  ) -> list[str]:
        # One image per prompt, nested as every image-text processor accepts (Idefics3 / SmolVLM require it).
        inputs = self.processor(images=[[image] for image in images], text=texts, return_tensors="pt", padding=True)
        device = self.model.device
        inputs = {name: value.to(device, self.dtype) if value.is_floating_point() else value.to(device)
                  for name, value in inputs.items()}
        output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False)
        if not self.encoder_decoder:
            output = output[:, inputs["input_ids"].shape[1]:]  # decoder-only: the prompt comes back first
        return [answer.strip() for answer in self.processor.batch_decode(output, skip_special_tokens=True)]
