"""The `vlm` labeler on the device benchmark: an instruction-following image-text model with random weights in the
configuration of Qwen2-VL-2B-Instruct (2.21 B parameters: a 32-block ViT of width 1280 merging 2x2 patches of 14 px,
and Qwen2-1.5B as its language model), or a tiny one for smoke runs, labelling the pseudo boxes of photo-sized JPEGs
through the labeler itself (pipelines/captioners/vlm.py): each image decoded once, every box's view and prompt,
left-padded batched generation on the device. Pseudo boxes per second for each region prompt; the phase's device
memory peak is recorded by bench/gpu.py.

Random weights never emit the end of text, so every answer runs to max_new_tokens: the slowest case of a real
model told to answer with a short noun phrase. The tokenizer is trained here (no hub); ids beyond its vocabulary,
which random weights produce, decode to nothing.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bench.gpu_workload import grid_boxes, write_image
from pipelines.captioners.base import ImageRegions
from pipelines.captioners.vlm import VlmRegionCaptioner
from pipelines.pseudo_labels_config import VlmSection
from shapesov.teachers.vlm_model import train_tokenizer
from vlm.clip import DTYPES
from vlm.image_text_model import ImageTextModel

# Qwen2-VL-2B-Instruct's config.json (Qwen2-1.5B's language model, tied embeddings; the vision tower of every
# Qwen2-VL size); the rope sections split the 128-wide heads into time, height and width.
QWEN2_VL_2B_TEXT = {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                    "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 32768,
                    "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}}
QWEN2_VL_2B_VISION = {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "hidden_size": 1536,
                      "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
TINY_TEXT = {"vocab_size": 1000, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 2048,
             "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}}
TINY_VISION = {"depth": 1, "embed_dim": 16, "mlp_ratio": 2, "num_heads": 2, "hidden_size": 32, "patch_size": 14,
               "spatial_merge_size": 2, "temporal_patch_size": 2}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
# Qwen2-VL's conversation format: a user turn holding the image placeholder and the text, then the assistant's.
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for part in message['content'] %}"
                 "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}"
                 "{{ part['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
BOXES_PER_IMAGE = 6


def qwen2_vl(full_size: bool, device: str, dtype: str) -> ImageTextModel:
    """Qwen2-VL with random weights (2B-sized or tiny) and its processor, on `device` in `dtype`."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor
    from transformers import Qwen2VLVideoProcessor

    section = VlmSection()
    tokenizer = train_tokenizer([section.crop_prompt, section.box_prompt, "a red star"], 400, SPECIAL_TOKENS,
                                eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    # Full size: Qwen2-VL's own limits (a 640x480 image is 391 merged tokens); tiny: at most 16, for a quick smoke run.
    images = Qwen2VLImageProcessor() if full_size else Qwen2VLImageProcessor(min_pixels=28 * 28 * 4,
                                                                             max_pixels=28 * 28 * 16)
    processor = Qwen2VLProcessor(image_processor=images, tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    config = Qwen2VLConfig(text_config={**(QWEN2_VL_2B_TEXT if full_size else TINY_TEXT), "pad_token_id": ids[
        "<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "bos_token_id": ids["<|endoftext|>"]},
                           vision_config=QWEN2_VL_2B_VISION if full_size else TINY_VISION,
                           image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                           vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                           tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: 2.2 B parameters fill quickly on a GPU
        model = Qwen2VLForConditionalGeneration(config)
    return ImageTextModel(model.to(DTYPES[dtype]).eval(), processor, dtype)


def write_images(folder: Path, count: int) -> list[ImageRegions]:
    """`count` 640x480 JPEGs (bench/gpu_workload.py) with BOXES_PER_IMAGE pseudo boxes each."""
    folder.mkdir(parents=True, exist_ok=True)
    batch = []
    for image_id in range(1, count + 1):
        write_image(folder, image_id)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in grid_boxes(image_id)[:BOXES_PER_IMAGE]], np.float32)
        batch.append(ImageRegions(image_id, f"{image_id:07d}.jpg", tuple(range(len(boxes))), boxes,
                                  np.zeros((len(boxes), 1), np.float32), np.ones(len(boxes), np.float32)))
    return batch


def boxes_per_second(model: ImageTextModel, image_root: Path, batch: list[ImageRegions], region_prompt: str,
                     max_new_tokens: int, regions_per_batch: int) -> float:
    """Pseudo boxes per second of the labeler over `batch` (after a warm-up on its first image)."""
    labeler = VlmRegionCaptioner(model, VlmSection(image_root=str(image_root), region_prompt=region_prompt,
                                                   max_new_tokens=max_new_tokens, num_beams=1,
                                                   regions_per_batch=regions_per_batch))
    labeler.caption(batch[:1])  # warm-up: kernels, allocator, the processor's first call
    _sync()
    started = time.perf_counter()
    answers = labeler.caption(batch)
    _sync()
    boxes = sum(len(item.region_ids) for item in batch)
    if sum(len(a) for a in answers if isinstance(a, list)) != boxes:
        raise RuntimeError(f"the labeler answered fewer than the {boxes} boxes: {answers!r:.300}")
    return boxes / (time.perf_counter() - started)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
