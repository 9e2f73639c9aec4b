"""Tiny teachers with random weights, saved in the real on-disk formats, for the pseudo-labels tests.

- CLIP: an open_clip `local-dir:` folder (open_clip_config.json + open_clip_model.safetensors).
- ClipCap: an official-layout state dict (with the legacy GPT-2 mask buffers) + a local GPT-2 directory whose
  tokenizer is trained offline with `tokenizers`.
- BLIP-2: `Blip2ForConditionalGeneration` (tiny ViT, Q-Former and OPT) + `Blip2Processor`, via save_pretrained.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

CLIP_DIM = 32
CAPTION_CORPUS = [f"a {colour} {shape} on a {ground} background." for colour in ("red", "blue", "green", "yellow")
                  for shape in ("star", "heart", "circle", "square", "hexagon", "cross") for ground in ("grey", "dark")]

TINY_CLIP_CONFIG = {
    "embed_dim": CLIP_DIM,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_tiny_clip(directory: Path, seed: int = 0) -> Path:
    """An open_clip folder with a random tiny ResNet CLIP; load it as `local-dir:<directory>`."""
    import open_clip
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    preprocess = {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bicubic",
                  "resize_mode": "shortest"}
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG,
                                                                 "preprocess_cfg": preprocess}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "open_clip_model.safetensors"))
    return directory


def write_tiny_gpt2_dir(directory: Path, n_embd: int = 32, corpus: list[str] = CAPTION_CORPUS) -> Path:
    """GPT-2's config and a byte-level BPE tokenizer learnt from `corpus` (its frequent words become one token)."""
    from transformers import GPT2Config

    from shapesov.teachers.tokenizer import train_caption_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_caption_tokenizer(corpus, vocab_size=300)
    tokenizer.save_pretrained(directory)
    GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=n_embd, n_layer=1, n_head=2,
               bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id).save_pretrained(directory)
    return directory


def write_tiny_clipcap(directory: Path, prefix_size: int = CLIP_DIM, mapping_type: str = "mlp",
                       seed: int = 0, corpus: list[str] = CAPTION_CORPUS) -> tuple[Path, Path]:
    """(checkpoint, gpt_dir): a random ClipCap state dict in the official layout, legacy mask buffers included."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from vlm.clipcap import ClipCapConfig, ClipCapModel

    gpt_dir = write_tiny_gpt2_dir(directory / "gpt2", corpus=corpus)
    torch.manual_seed(seed)
    gpt_config = GPT2Config.from_pretrained(gpt_dir)
    model = ClipCapModel(ClipCapConfig(mapping_type, prefix_size=prefix_size, prefix_length=4, clip_length=4,
                                       num_layers=1), GPT2LMHeadModel(gpt_config))
    state = dict(model.state_dict())
    # What checkpoints saved by older transformers carry: per-layer causal-mask buffers, no learned values.
    for layer in range(gpt_config.n_layer):
        state[f"gpt.transformer.h.{layer}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64, dtype=torch.bool))
        state[f"gpt.transformer.h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    checkpoint = directory / "clipcap.pt"
    torch.save(state, checkpoint)
    return checkpoint, gpt_dir


def write_tiny_blip2(directory: Path, seed: int = 0) -> Path:
    """A random tiny BLIP-2 (ViT 32 px, 1-layer Q-Former, 1-layer OPT) and its processor, saved for from_pretrained."""
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig,
                              Blip2VisionConfig, BlipImageProcessor, GPT2TokenizerFast, OPTConfig)

    from shapesov.teachers.tokenizer import END_OF_TEXT, train_caption_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    slow = train_caption_tokenizer(CAPTION_CORPUS, vocab_size=300)
    slow.save_pretrained(directory / "_tokenizer")
    tokenizer = GPT2TokenizerFast.from_pretrained(directory / "_tokenizer", pad_token=END_OF_TEXT)
    processor = Blip2Processor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer, num_query_tokens=4)
    vocab = len(processor.tokenizer)
    config = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=32, encoder_hidden_size=16, vocab_size=vocab).to_dict(),
        text_config=OPTConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                              num_attention_heads=2, word_embed_proj_dim=16, max_position_embeddings=64,
                              pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id,
                              eos_token_id=tokenizer.eos_token_id).to_dict(),
        num_query_tokens=4, image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
