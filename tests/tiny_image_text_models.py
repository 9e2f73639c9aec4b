"""Tiny instruction-following image-text models with random weights, saved with save_pretrained for
AutoModelForImageTextToText / AutoProcessor, each with its real processor and a tokenizer trained offline with
`tokenizers` (no hub): LLaVA (CLIP ViT + Llama), Qwen2.5-VL and Idefics3 (SmolVLM's architecture).

Weights are drawn wider than transformers' init (initializer_range) so that answers depend on the image and the
prompt: with the usual 0.02 a one-layer model says the same thing whatever it is shown.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from shapesov.teachers.vlm_model import train_tokenizer as train_bpe

CORPUS = [f"a {colour} {shape} on a {ground} background." for colour in ("red", "blue", "green", "yellow")
          for shape in ("star", "heart", "circle", "square") for ground in ("grey", "dark")]
CORPUS += ["What is the object inside the red box at (12, 345, 678, 901)?", "Answer with its name only."]
INIT_RANGE = 0.5
ARCHITECTURES = ("llava", "qwen2_5_vl", "idefics3")

LLAVA_TEMPLATE = ("{% for message in messages %}{{ message['role'] | upper }}: {% for part in message['content'] %}"
                  "{% if part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}{% endif %}{% endfor %}\n"
                  "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
QWEN_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for part in message['content'] %}"
                 "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}"
                 "{{ part['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
IDEFICS3_TEMPLATE = ("<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
                     "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>{% else %}"
                     "{{ part['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
                     "{% if add_generation_prompt %}Assistant:{% endif %}")


def train_tokenizer(special_tokens: list[str], **roles) -> PreTrainedTokenizerFast:
    """A byte-level BPE of 300 tokens on CORPUS with `special_tokens`; roles: bos_token=..., pad_token=..."""
    return train_bpe(CORPUS, 300, special_tokens, **roles)


def _llama(tokenizer, hidden: int = 32) -> dict:
    return dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                initializer_range=INIT_RANGE, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _llava():
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)

    tokenizer = train_tokenizer(["<|endoftext|>", "<pad>", "<image>"], bos_token="<|endoftext|>",
                                eos_token="<|endoftext|>", pad_token="<pad>",
                                extra_special_tokens={"image_token": "<image>"})
    size = {"height": 32, "width": 32}
    processor = LlavaProcessor(CLIPImageProcessor(size=size, crop_size=size), tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_TEMPLATE)
    config = LlavaConfig(vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                        num_attention_heads=2, image_size=32, patch_size=8),
                         text_config=_llama(tokenizer), image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         image_seq_length=16)
    return LlavaForConditionalGeneration(config), processor


def _qwen2_5_vl():
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>"]
    tokenizer = train_tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in specials}
    # 28 px per merged token (patch 14, merge 2): 4 to 16 image tokens per view.
    images = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    processor = Qwen2_5_VLProcessor(image_processor=images, tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=QWEN_TEMPLATE)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512, initializer_range=INIT_RANGE,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=32, window_size=56, fullatt_block_indexes=[0])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"])
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _idefics3():
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    specials = ["<|endoftext|>", "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
    specials += [f"<row_{row}_col_{col}>" for row in range(1, 4) for col in range(1, 4)]
    tokenizer = train_tokenizer(specials, bos_token="<|endoftext|>", eos_token="<end_of_utterance>",
                                pad_token="<|endoftext|>")
    # Views up to 64 px split into 32 px tiles plus the whole view, 4 image tokens each (scale factor 2).
    images = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    processor = Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    config = Idefics3Config(text_config=_llama(tokenizer),
                            vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                               num_attention_heads=2, image_size=32, patch_size=8),
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2)
    return Idefics3ForConditionalGeneration(config), processor


BUILDERS = {"llava": _llava, "qwen2_5_vl": _qwen2_5_vl, "idefics3": _idefics3}


def write_tiny_image_text_model(architecture: str, directory: Path, seed: int = 0) -> Path:
    """A random tiny model of `architecture` (a key of BUILDERS) and its processor, saved in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, processor = BUILDERS[architecture]()
    model.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
