"""BLIP-2 from a tiny random save_pretrained folder (OPT, a decoder-only language model) captioning PIL images."""
import numpy as np
import pytest
from PIL import Image

from tests.tiny_teachers import write_tiny_blip2
from vlm.blip2 import Blip2Captioner


@pytest.fixture(scope="module")
def captioner(tmp_path_factory) -> Blip2Captioner:
    return Blip2Captioner.from_dir(write_tiny_blip2(tmp_path_factory.mktemp("blip2")))


def images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (24 + 8 * i, 40, 3), dtype=np.uint8)) for i in range(count)]


@pytest.mark.parametrize("prompt", [None, "a photo of"])
def test_one_caption_per_image_without_the_prompt_and_independent_of_the_batch(captioner, prompt):
    together = captioner.caption(images(3), prompt=prompt, max_new_tokens=4)
    assert len(together) == 3 and all(isinstance(text, str) and text for text in together)
    # OPT returns the prompt's ids before the caption; they are cut off, not echoed.
    assert not any(text.startswith("a photo of") for text in together)
    assert captioner.caption(images(3)[2:], prompt=prompt, max_new_tokens=4) == together[2:]


def test_beam_search_decodes_too(captioner):
    assert len(captioner.caption(images(2), max_new_tokens=3, num_beams=2)) == 2


def test_batches_of_any_size_give_the_same_captions(captioner):
    """`batch_size` (and the out-of-memory back-off that halves it, vlm.oom_backoff) splits one call into several
    `generate` batches; no caption may depend on where the splits fall."""
    together = captioner.caption(images(5), max_new_tokens=4)
    assert captioner.caption(images(5), max_new_tokens=4, batch_size=2) == together
    assert captioner.caption([], max_new_tokens=4) == []
