"""The ShapesOV instruction-following teacher as a LLaVA: the CLIP teacher's image tower (vlm/open_clip_vision.py),
LLaVA's two-layer projector and a small Llama, with a LlavaProcessor, saved with `save_pretrained` so the `vlm`
labeler loads it through AutoModelForImageTextToText / AutoProcessor like any hub model.

The tokenizer is a byte-level BPE trained here on the prompts and answers, digits split one by one (as Llama's
tokenizer does), so a coordinate is read digit by digit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (CLIPImageProcessor, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                          LlavaProcessor, PreTrainedTokenizerFast)

from shapesov.teachers.vlm_config import VlmTeacherConfig
from vlm.open_clip_vision import OpenClipVisionConfig, tokens_per_view

END_OF_TEXT, PAD, IMAGE = "<|endoftext|>", "<pad>", "<image>"
# A LLaVA-1.5-style conversation ("USER: <image>\n{question}\nASSISTANT:"), the image first, then the text.
CHAT_TEMPLATE = ("{% for message in messages %}{{ message['role'] | upper }}: "
                 "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
                 "{% else %}{{ part['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
                 "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
CLIP_CONFIG, CLIP_WEIGHTS = "open_clip_config.json", "open_clip_model.safetensors"  # open_clip's local-dir files


def train_tokenizer(corpus: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (END_OF_TEXT, PAD, IMAGE),
                    **roles) -> PreTrainedTokenizerFast:
    """Byte-level BPE on `corpus` (every byte encodes), digits one token each, `special_tokens` first. `roles` name
    them (bos_token=..., extra_special_tokens=...); by default bos = eos = END_OF_TEXT, PAD pads, IMAGE is the
    image token."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(list(corpus), trainer)
    roles = roles or {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "pad_token": PAD,
                      "extra_special_tokens": {"image_token": IMAGE}}
    return PreTrainedTokenizerFast(tokenizer_object=bpe, **roles)


def clip_parts(clip_dir: Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """(model_cfg, preprocess_cfg, the image tower's weights without the `visual.` prefix) of an open_clip
    local-dir folder."""
    config = json.loads((clip_dir / CLIP_CONFIG).read_text())
    weights = load_file(str(clip_dir / CLIP_WEIGHTS))
    visual = {name[len("visual."):]: value for name, value in weights.items() if name.startswith("visual.")}
    return config["model_cfg"], config["preprocess_cfg"], visual


def build_processor(tokenizer: PreTrainedTokenizerFast, preprocess_cfg: dict, image_size: int) -> LlavaProcessor:
    """Views squashed to image_size (bicubic, no centre crop: the whole crop or image stays in view) and normalised
    with the CLIP's mean and std; `<image>` expanded to the tower's token count."""
    window = int(preprocess_cfg["size"])
    tiles, additional = tokens_per_view(image_size, window)
    size = {"height": image_size, "width": image_size}
    images = CLIPImageProcessor(size=size, crop_size=size, do_center_crop=False, resample=3,  # PIL bicubic
                                image_mean=preprocess_cfg["mean"], image_std=preprocess_cfg["std"])
    return LlavaProcessor(images, tokenizer, patch_size=window, vision_feature_select_strategy="full",
                          num_additional_image_tokens=additional, chat_template=CHAT_TEMPLATE)


def build_teacher(cfg: VlmTeacherConfig, clip_dir: Path, tokenizer: PreTrainedTokenizerFast
                  ) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A LLaVA around the CLIP of `clip_dir` (its image tower's weights loaded, frozen) with a randomly initialised
    projector and Llama, and its processor."""
    model_cfg, preprocess_cfg, visual = clip_parts(clip_dir)
    window = int(preprocess_cfg["size"])
    tiles, additional = tokens_per_view(cfg.image_size, window)
    vision = OpenClipVisionConfig(open_clip_model_cfg={"embed_dim": model_cfg["embed_dim"],
                                                       "vision_cfg": model_cfg["vision_cfg"]},
                                  image_size=cfg.image_size, window_size=window, hidden_size=model_cfg["embed_dim"])
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                       num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                       num_key_value_heads=cfg.num_heads, max_position_embeddings=cfg.max_positions,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
                         image_seq_length=tiles + additional, vision_feature_layer=-1,
                         vision_feature_select_strategy="full")
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.visual.load_state_dict(visual)
    model.model.vision_tower.requires_grad_(False)
    model.model.vision_tower.eval()  # frozen CLIP: its BatchNorm keeps the statistics CLIP learned
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, build_processor(tokenizer, preprocess_cfg, cfg.image_size)


def save_teacher(model: LlavaForConditionalGeneration, processor: LlavaProcessor, out_dir: Path) -> list[Path]:
    """save_pretrained of the model and processor into `out_dir`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return sorted(path for path in out_dir.rglob("*") if path.is_file())
