"""BLIP-2: transformers `Blip2ForConditionalGeneration` + `Blip2Processor` from a save_pretrained folder, and
batched caption generation on PIL images (fp16 `generate` on a GPU, batches halved on an out-of-memory error).

LAVIS cannot be installed beside current transformers, and its BLIP-2 checkpoints exist as transformers checkpoints,
so this is the one BLIP-2 loader.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from vlm.clip import DTYPES, device_dtype, resolve_device
from vlm.oom_backoff import BatchBackoff


class Blip2Captioner:
    """PIL images → one caption each, all generated in one batch."""

    def __init__(self, model, processor, dtype: str = "fp32"):
        self.model = model.eval()
        self.processor = processor
        self.dtype = DTYPES[dtype]
        self.batch_cap: int | None = None  # the batch size an out-of-memory error left, for every later call

    @classmethod
    def from_dir(cls, model_dir: str | Path, dtype: str = "fp32", device: str = "cpu") -> "Blip2Captioner":
        # transformers is imported when a BLIP-2 is loaded, not with this module: importing it stays cheap.
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        target = resolve_device(device)
        dtype = device_dtype(dtype, target, "captioner.blip2.dtype")  # fp16 on a CPU runs in fp32
        processor = Blip2Processor.from_pretrained(model_dir)
        model = Blip2ForConditionalGeneration.from_pretrained(model_dir, dtype=DTYPES[dtype])
        return cls(model.to(target), processor, dtype)

    @torch.inference_mode()
    def caption(self, images: list[Image.Image], prompt: str | None = None, max_new_tokens: int = 20,
                num_beams: int = 1, batch_size: int | None = None) -> list[str]:
        """N images → N captions (greedy or beam search, no sampling); `prompt` conditions them, e.g. "a photo of".

        `batch_size` images per `generate` (None: all at once) on the model's device, in the model's dtype (fp16 on
        a GPU: config key captioner.blip2.dtype); an out-of-memory error halves the batch for this and every later
        call."""
        if not images:
            return []
        batch_size = min(batch_size or len(images), self.batch_cap or len(images))
        backoff = BatchBackoff(batch_size, "BLIP-2 images per batch")
        captions = [text for texts in backoff.run(len(images), lambda start, stop: self._generate(
            images[start:stop], prompt, max_new_tokens, num_beams)) for text in texts]
        if backoff.backoffs:
            self.batch_cap = backoff.size
        return captions

    def _generate(self, images: list[Image.Image], prompt: str | None, max_new_tokens: int, num_beams: int
                  ) -> list[str]:
        # Decoder-only LMs (OPT) return their input ids before the caption, so they always get a text input (the
        # prompt or "") whose length is then cut off; encoder-decoders (Flan-T5) return only the new tokens.
        decoder_only = self.model.config.use_decoder_only_language_model
        text = [prompt or ""] * len(images) if prompt or decoder_only else None
        inputs = self.processor(images=images, text=text, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False)
        if decoder_only:
            output = output[:, inputs["input_ids"].shape[1]:]
        return [caption.strip() for caption in self.processor.batch_decode(output, skip_special_tokens=True)]
