"""The text tower's shortcuts give what open_clip's encode_text gives, on every kind of prompt, and do skip the work
they claim to skip."""
import logging

import numpy as np
import open_clip
import torch

from tests.float32 import ABS, REL
from tests.tiny_clip import MODEL_CONFIGS, TINY, tiny_model
from vlm.prompts import IMAGENET80
from vlm.text_tower import PromptEncoder, supports_shortcuts

# A name the tokenizer splits inside a word of the template ("'s" merges with nothing, "!!" is punctuation), an
# empty name, a name long enough to be cut at the context length, and ordinary ones.
NAMES = ["red car", "dog", "man's hat", "!!", "", "a very " + "long " * 40 + "name", "wooden chair"]
TEMPLATES = ("a photo of a {}.", "{} in a video game.", "a {} in a video game.", "itap of my {}.", "{}")


def full_length(model, tokenizer, names, templates) -> torch.Tensor:
    with torch.inference_mode():
        return torch.stack([model.encode_text(tokenizer([t.format(n) for t in templates])) for n in names])


def test_shortcuts_equal_encode_text_on_every_kind_of_prompt():
    model = tiny_model().eval()
    tokenizer = open_clip.get_tokenizer(TINY)
    assert supports_shortcuts(model)
    encoder = PromptEncoder(model, tokenizer, "cpu", batch_size=4)  # several batches per call
    got = encoder.encode(NAMES, TEMPLATES)
    assert encoder.shortcuts  # the self-check kept them
    expected = full_length(model, tokenizer, NAMES, TEMPLATES)
    assert got.shape == expected.shape == (len(NAMES), len(TEMPLATES), 16)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=REL, atol=10 * ABS)
    # A second call reuses the templates' prefixes and gives the same numbers.
    np.testing.assert_allclose(encoder.encode(NAMES[:2], TEMPLATES).numpy(), got[:2].numpy(), rtol=REL, atol=ABS)


def test_prompts_cost_their_names_not_the_context():
    """Every token that goes through the first block's MLP is counted: the 80 templates of 10 one-word names
    must cost a small fraction of 800 prompts x 77 tokens (the shared words before the name are paid once)."""
    model = tiny_model().eval()
    tokenizer = open_clip.get_tokenizer(TINY)
    counted = []
    model.transformer.resblocks[0].mlp.register_forward_hook(lambda _m, args, _o: counted.append(args[0].shape[:-1]))
    names = [f"thing{i}" for i in range(10)]
    PromptEncoder(model, tokenizer, "cpu").encode(names, IMAGENET80)
    tokens = sum(int(np.prod(shape)) for shape in counted)
    assert tokens < 0.15 * len(names) * len(IMAGENET80) * 77


def test_a_text_tower_without_causal_mask_goes_through_encode_text():
    import json

    config = json.loads((MODEL_CONFIGS / f"{TINY}.json").read_text())
    config["text_cfg"]["no_causal_mask"] = True
    torch.manual_seed(0)
    model = open_clip.CLIP(**config).eval()
    tokenizer = open_clip.get_tokenizer(TINY)
    assert not supports_shortcuts(model)
    got = PromptEncoder(model, tokenizer, "cpu", batch_size=3).encode(NAMES[:3], TEMPLATES)
    np.testing.assert_allclose(got.numpy(), full_length(model, tokenizer, NAMES[:3], TEMPLATES).numpy(),
                               rtol=REL, atol=ABS)


def test_a_shortcut_that_disagrees_is_switched_off(caplog, monkeypatch):
    import vlm.text_tower as text_tower

    model = tiny_model().eval()
    tokenizer = open_clip.get_tokenizer(TINY)
    real = text_tower.encode_after_prefixes
    monkeypatch.setattr(text_tower, "encode_after_prefixes", lambda *args: real(*args) * 2)  # a broken release
    with caplog.at_level(logging.WARNING, logger="vlm.text_tower"):
        encoder = PromptEncoder(model, tokenizer, "cpu")
        got = encoder.encode(NAMES[:2], TEMPLATES)
    assert not encoder.shortcuts and "encoding every prompt in full" in caplog.text
    np.testing.assert_allclose(got.numpy(), full_length(model, tokenizer, NAMES[:2], TEMPLATES).numpy(),
                               rtol=REL, atol=ABS)
