"""An open_clip image tower inside a transformers LLaVA: its tokens are CLIP's own embeddings of the windows, and
the LLaVA saves and loads through AutoModelForImageTextToText / AutoProcessor with `<image>` expanded to exactly
the tower's token count."""
import json

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from shapesov.teachers.vlm_config import VlmTeacherConfig
from shapesov.teachers.vlm_model import build_teacher, train_tokenizer
from tests.float32 import approx32
from tests.tiny_teachers import write_tiny_clip
from vlm.open_clip_vision import OpenClipVisionConfig, OpenClipVisionModel, tokens_per_view, window_pyramid


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_the_pyramid_is_the_thumbnail_the_half_overlapping_double_windows_and_the_tiles():
    pixels = torch.arange(2 * 3 * 96 * 96, dtype=torch.float32).view(2, 3, 96, 96)
    windows = window_pyramid(pixels, 32)
    assert windows.shape == (2, 1 + 4 + 9, 3, 32, 32) and tokens_per_view(96, 32) == (9, 5)
    assert torch.equal(windows[:, 5], pixels[:, :, :32, :32])  # the first tile, row-major
    assert torch.equal(windows[:, 5 + 5], pixels[:, :, 32:64, 64:96])  # row 1, column 2
    expected = F.interpolate(pixels[:, :, 32:96, 0:64], size=(32, 32), mode="bicubic", antialias=True)
    assert torch.allclose(windows[:, 1 + 2], expected)  # double windows start every 32 px: row 1, column 0
    assert torch.allclose(windows[:, 0], F.interpolate(pixels, size=(32, 32), mode="bicubic", antialias=True))


def test_each_token_is_the_unit_clip_embedding_of_its_window(clip_dir):
    config = json.loads((clip_dir / "open_clip_config.json").read_text())["model_cfg"]
    clip, _, _ = open_clip.create_model_and_transforms(f"local-dir:{clip_dir}")
    tower = OpenClipVisionModel(OpenClipVisionConfig(open_clip_model_cfg=config, image_size=64, window_size=32,
                                                     hidden_size=config["embed_dim"]))
    tower.visual.load_state_dict(clip.visual.state_dict())
    tower.eval()
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        tokens = tower(pixels).last_hidden_state
        expected = F.normalize(clip.eval().encode_image(window_pyramid(pixels, 32).flatten(0, 1)), dim=-1)
    assert tokens.shape == (2, 1 + 1 + 4, config["embed_dim"])
    assert tokens.flatten(0, 1).numpy() == approx32(expected.numpy())


def test_window_and_embedding_sizes_must_be_the_clips():
    config = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8}}
    with pytest.raises(ValueError, match="window_size 16"):
        OpenClipVisionModel(OpenClipVisionConfig(open_clip_model_cfg=config, image_size=64, window_size=16,
                                                 hidden_size=32))
    with pytest.raises(ValueError, match="not a multiple"):
        OpenClipVisionConfig(open_clip_model_cfg=config, image_size=48, window_size=32, hidden_size=32)


def test_a_llava_around_the_tower_round_trips_through_the_auto_classes(clip_dir, tmp_path):
    tokenizer = train_tokenizer(["What is this? a red star", "a blue heart"], 300)
    model, processor = build_teacher(VlmTeacherConfig(image_size=96, hidden_size=32, intermediate_size=64,
                                                      num_layers=1, num_heads=2), clip_dir, tokenizer)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "LlavaForConditionalGeneration"
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    view = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 70, 3), dtype=np.uint8))
    text = reloaded.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                      {"type": "text", "text": "What is this?"}]}],
                                        add_generation_prompt=True)
    inputs = reloaded(images=[view], text=[text], return_tensors="pt")
    assert int((inputs["input_ids"] == loaded.config.image_token_id).sum()) == 14  # 9 tiles + 4 windows + 1
    with torch.inference_mode():
        features = loaded.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    assert [tuple(f.shape) for f in features] == [(14, 32)]
    generated = loaded.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3
