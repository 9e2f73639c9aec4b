import numpy as np
import pytest
import torch
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from vlm.prompts import IMAGENET80, SINGLE, templates, text_embeddings
from tests.tiny_clip import tiny_model


def test_imagenet80_are_the_clip_templates():
    assert len(IMAGENET80) == 80 and len(set(IMAGENET80)) == 80
    assert list(IMAGENET80) == [template("{}") for template in OPENAI_IMAGENET_TEMPLATES]
    assert SINGLE == ("a photo of a {}.",)
    with pytest.raises(ValueError, match="vocab.prompts"):
        templates("fancy")


def test_embedding_is_renormalised_mean_of_normalised_templates():
    import open_clip

    model = tiny_model().eval()
    tokenizer = open_clip.get_tokenizer("tiny-vit-test")
    embeddings = text_embeddings(model, tokenizer, ["circle", "star"], "imagenet80")
    assert embeddings.shape == (2, 16) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    with torch.no_grad():
        per = torch.nn.functional.normalize(model.encode_text(tokenizer([t.format("star") for t in IMAGENET80])), dim=-1)
    expected = torch.nn.functional.normalize(per.mean(0), dim=0).numpy()
    np.testing.assert_allclose(embeddings[1], expected, atol=1e-5)
