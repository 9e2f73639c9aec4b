"""Instruction-following image-text models of three architectures (LLaVA, Qwen2.5-VL, Idefics3 = SmolVLM's), tiny
and random, laid out in the Hugging Face cache as the hub lays them out and loaded by repo id: prompt formatting
through each processor's chat template, left-padded batched generation, and a processor round trip on real crops."""
import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from pipelines.captioners.vlm import region_prompt_style
from pipelines.pseudo_labels_config import VlmSection
from pipelines.region_prompts import region_view
from shapesov.config import SceneConfig
from shapesov.scenes import sample_scene
from tests.hub_cache import add_commit, new_repo_id
from tests.tiny_image_text_models import ARCHITECTURES, write_tiny_image_text_model
from tests.tiny_teachers import write_tiny_gpt2_dir
from vlm.hub import ModelLoadError, resolve_pretrained_dir
from vlm.image_text_model import ImageTextModel, check_image_text_model

KEY = "captioner.vlm.model"


@pytest.fixture(scope="module", params=ARCHITECTURES)
def snapshot(request, tmp_path_factory):
    """(architecture, the model's snapshot folder in the session's Hugging Face cache, its repo id)."""
    folder = write_tiny_image_text_model(request.param, tmp_path_factory.mktemp(request.param))
    repo = new_repo_id(request.param.replace("_", "-"))
    return request.param, add_commit(repo, folder), repo


@pytest.fixture(scope="module")
def model(snapshot) -> ImageTextModel:
    architecture, _, repo = snapshot
    return ImageTextModel.from_dir(resolve_pretrained_dir(repo, KEY).path)


def real_views(count: int, region_prompt: str):
    """Views and prompts of the objects of ShapesOV scenes, as the vlm labeler cuts and asks them."""
    style = region_prompt_style(VlmSection(region_prompt=region_prompt))
    views = []
    for seed in range(8):
        scene = sample_scene(np.random.default_rng(seed), SceneConfig())
        pixels = np.asarray(scene.image.convert("RGB"))
        for obj in scene.objects:
            x, y, w, h = obj.bbox
            views.append(region_view(pixels, (x, y, x + w, y + h), style))
    return views[:count]


def test_a_repo_id_resolves_to_its_snapshot_and_is_an_image_text_model(snapshot):
    architecture, folder, repo = snapshot
    files = resolve_pretrained_dir(repo, KEY)
    assert files.path == str(folder) and files.revision == folder.name
    assert (folder / "chat_template.jinja").is_file()  # fetched from the hub with the configs (vlm.hub)
    assert check_image_text_model(files.path, KEY) == architecture


@pytest.mark.parametrize("region_prompt", ["crop", "box"])
def test_answers_do_not_depend_on_the_batch_or_its_padding(model, region_prompt):
    """Box prompts carry coordinates of different lengths and crops differ in size, so a batch is padded; left
    padding must leave every answer as it is when the pair is asked alone, whatever the batch size."""
    views = real_views(5, region_prompt)
    images, prompts = [v for v, _ in views], [p for _, p in views]
    together = model.answer(images, prompts, max_new_tokens=4)
    assert len(together) == 5 and all(isinstance(answer, str) for answer in together)
    assert len(set(together)) > 1  # random but wide weights: the answers follow the inputs
    assert [model.answer([i], [p], max_new_tokens=4)[0] for i, p in zip(images, prompts)] == together
    assert model.answer(images, prompts, max_new_tokens=4, batch_size=2) == together
    assert model.answer([], [], max_new_tokens=4) == []


def test_the_prompt_is_a_user_turn_of_the_models_own_chat_template(model):
    text = model.format("What is this?")
    assert "What is this?" in text and text == model.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}],
        add_generation_prompt=True)
    assert model.processor.tokenizer.padding_side == "left"


def test_the_processor_round_trips_on_real_crops(snapshot, model):
    """The processor saved in the cache, reloaded by AutoProcessor, turns real crops and their prompts into the
    same tensors as the one the model was built with, and its image tokens are exactly what the model consumes."""
    _, folder, _ = snapshot
    reloaded = AutoProcessor.from_pretrained(folder)
    reloaded.tokenizer.padding_side = "left"  # as ImageTextModel sets it for a decoder-only model
    views = real_views(3, "crop")
    texts = [model.format(prompt) for _, prompt in views]
    first = model.processor(images=[[v] for v, _ in views], text=texts, return_tensors="pt", padding=True)
    second = reloaded(images=[[v] for v, _ in views], text=texts, return_tensors="pt", padding=True)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    decoded = model.processor.tokenizer.batch_decode(first["input_ids"], skip_special_tokens=False)
    assert all(views[0][1] in text for text in decoded)
    with torch.inference_mode():  # raises when image tokens and image features do not match in number
        logits = model.model(**first).logits
    assert logits.shape[:2] == first["input_ids"].shape


def test_prompts_go_as_written_without_the_chat_template(snapshot):
    architecture, folder, _ = snapshot
    model = ImageTextModel.from_dir(folder, chat_template=False)
    written = model.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}],
        add_generation_prompt=True)
    assert model.format(written) == written
    views = real_views(2, "crop")
    assert model.answer([v for v, _ in views], [written, written], max_new_tokens=3) == \
        ImageTextModel.from_dir(folder).answer([v for v, _ in views], ["What?", "What?"], max_new_tokens=3)


def test_a_text_only_model_is_refused_naming_the_key(tmp_path):
    gpt2 = write_tiny_gpt2_dir(tmp_path / "gpt2")
    with pytest.raises(ModelLoadError, match="not an image-text-to-text model.*captioner.vlm.model"):
        check_image_text_model(gpt2, KEY)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="captioner.vlm.model"):
        check_image_text_model(tmp_path / "broken", KEY)
