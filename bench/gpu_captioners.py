"""The captioners of the device benchmark, built with random weights in their real architectures (no download):
ClipCap with a GPT-2-small-sized language model (bench/pseudo_labels.py builds it), and BLIP-2 at the size of
Salesforce/blip2-opt-2.7b (ViT-g/14 224 px, 32 queries, OPT-2.7b), or tiny ones for a smoke run."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import REPO
from bench.pseudo_labels import write_gpt2_small_clipcap
from vlm.blip2 import Blip2Captioner
from vlm.clip import DTYPES
from vlm.clipcap import ClipCapCaptioner

TEACHER_CLIPCAP = REPO / "assets" / "teachers" / "clipcap"
# Salesforce/blip2-opt-2.7b's language model (its config.json); the vision tower and Q-Former are transformers'
# Blip2VisionConfig / Blip2QFormerConfig defaults, which are that checkpoint's ViT-g/14 and Q-Former.
OPT_2_7B = {"hidden_size": 2560, "ffn_dim": 10240, "num_hidden_layers": 32, "num_attention_heads": 32,
            "vocab_size": 50272, "word_embed_proj_dim": 2560, "max_position_embeddings": 2048}
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "image_size": 64, "patch_size": 16}
TINY_QFORMER = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                "encoder_hidden_size": 32}
TINY_OPT = {"hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 1000,
            "word_embed_proj_dim": 32, "max_position_embeddings": 128}


def clipcap(folder: Path, small: bool, device: str, dtype: str) -> ClipCapCaptioner:
    """A GPT-2-small-sized ClipCap with random weights (`small`), else our committed tiny teacher (smoke runs)."""
    if small:
        checkpoint, gpt_dir = write_gpt2_small_clipcap(folder)
        return ClipCapCaptioner.from_paths(checkpoint, gpt_dir).to(device, dtype)
    return ClipCapCaptioner.from_paths(TEACHER_CLIPCAP / "clipcap_mlp.pt", TEACHER_CLIPCAP / "gpt2").to(device, dtype)


def clipcap_captions_per_second(captioner: ClipCapCaptioner, count: int, method: str, batch: int,
                                max_tokens: int) -> float:
    embeddings = torch.randn(count, captioner.model.config.prefix_size, generator=torch.Generator().manual_seed(0))
    captioner.caption(embeddings[:2], method=method, max_tokens=2)  # warm-up: kernels, allocator
    _sync()
    started = time.perf_counter()
    captioner.caption(embeddings, method=method, batch_size=batch, max_tokens=max_tokens)
    _sync()
    return count / (time.perf_counter() - started)


def blip2(full_size: bool, device: str, dtype: str) -> Blip2Captioner:
    """BLIP-2 with random weights on `device` in `dtype`; the tokenizer is the ClipCap teacher's (offline)."""
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig,
                              Blip2VisionConfig, BlipImageProcessor, GPT2TokenizerFast, OPTConfig)

    tokenizer = GPT2TokenizerFast.from_pretrained(TEACHER_CLIPCAP / "gpt2")
    tokenizer.pad_token = tokenizer.eos_token
    queries = 32 if full_size else 4
    vision = Blip2VisionConfig() if full_size else Blip2VisionConfig(**TINY_VISION)
    size = vision.image_size
    processor = Blip2Processor(BlipImageProcessor(size={"height": size, "width": size}), tokenizer,
                               num_query_tokens=queries)
    opt = OPTConfig(**(OPT_2_7B if full_size else TINY_OPT), pad_token_id=tokenizer.pad_token_id,
                    bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    qformer = Blip2QFormerConfig() if full_size else Blip2QFormerConfig(**TINY_QFORMER)
    config = Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=opt.to_dict(),
                         num_query_tokens=queries,
                         image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: 3.8 B parameters are quick to fill on a GPU, not a CPU
        model = Blip2ForConditionalGeneration(config)
    return Blip2Captioner(model.to(DTYPES[dtype]).eval(), processor, dtype)


def blip2_captions_per_second(captioner: Blip2Captioner, count: int, max_new_tokens: int) -> float:
    rng = np.random.default_rng(0)
    size = captioner.processor.image_processor.size["height"]
    images = [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(count)]
    captioner.caption(images[:2], max_new_tokens=2)  # warm-up
    _sync()
    started = time.perf_counter()
    captioner.caption(images, max_new_tokens=max_new_tokens)
    _sync()
    return count / (time.perf_counter() - started)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
