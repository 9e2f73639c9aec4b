"""The `vlm` labeler through the captioner registry: real image files, both region prompts, tiny random models of
two architectures by folder and by hub name; its errors name the config key before any model is loaded; its
template and model files decide the shard fingerprint."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.captioners import ImageRegions, build_captioner, captioner_provenance, resolve_captioner
from pipelines.pseudo_labels_config import CaptionerSection, PseudoLabelsConfig, VlmSection
from shapesov.config import SceneConfig
from shapesov.scenes import sample_scene
from tests.hub_cache import add_commit, new_repo_id
from tests.tiny_image_text_models import write_tiny_image_text_model
from tests.tiny_teachers import write_tiny_gpt2_dir


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """Two ShapesOV scenes as PNG files; returns the folder."""
    root = tmp_path_factory.mktemp("images")
    for seed in range(2):
        sample_scene(np.random.default_rng(seed), SceneConfig()).image.save(root / f"{seed}.png")
    return root


@pytest.fixture(scope="module", params=["llava", "qwen2_5_vl"])
def model_dir(request, tmp_path_factory) -> Path:
    return write_tiny_image_text_model(request.param, tmp_path_factory.mktemp(request.param))


def regions(image_id: int, file_name: str, boxes: list) -> ImageRegions:
    count = len(boxes)
    return ImageRegions(image_id, file_name, tuple(range(count)), np.array(boxes, np.float32).reshape(-1, 4),
                        np.zeros((count, 4), np.float32), np.ones(count, np.float32))


def vlm(model: str, image_root: Path, **settings) -> CaptionerSection:
    return CaptionerSection(name="vlm", vlm=VlmSection(model=str(model), image_root=str(image_root),
                                                       max_new_tokens=4, **settings))


@pytest.mark.parametrize("region_prompt", ["crop", "box"])
def test_every_box_of_every_image_gets_an_answer_and_unreadable_images_a_failure(model_dir, image_root,
                                                                                region_prompt):
    captioner = build_captioner(vlm(model_dir, image_root, region_prompt=region_prompt))
    batch = [regions(1, "0.png", [[10, 12, 60, 70], [40, 30, 120, 110]]), regions(2, "missing.png", [[0, 0, 9, 9]]),
             regions(3, "1.png", [[5, 5, 50, 50]]), regions(4, "../0.png", [[0, 0, 9, 9]]), regions(5, "1.png", [])]
    results = captioner.caption(batch)
    assert [len(r) if isinstance(r, list) else r.kind for r in results] == [2, "missing", 1, "path_escape", 0]
    assert all(isinstance(answer, str) for answer in results[0] + results[2])
    # Generated together (padded on the left) or alone, a box gets the same answer.
    assert captioner.caption([batch[2]]) == [results[2]]
    assert captioner.caption([batch[0]]) == [results[0]]


def test_the_two_region_prompts_show_the_model_different_things(model_dir, image_root):
    batch = [regions(1, "0.png", [[10, 12, 60, 70], [40, 30, 120, 110], [0, 0, 80, 40]])]
    crop = build_captioner(vlm(model_dir, image_root, region_prompt="crop")).caption(batch)
    box = build_captioner(vlm(model_dir, image_root, region_prompt="box")).caption(batch)
    assert crop != box


def test_a_hub_name_resolves_through_the_cache_and_is_recorded_with_its_commit(model_dir, image_root):
    repo = new_repo_id("vlm")
    snapshot = add_commit(repo, model_dir)
    resolved = resolve_captioner(vlm(repo, image_root), runtime_device="cpu")
    assert resolved.config.vlm.model == str(snapshot) and resolved.config.vlm.device == "cpu"
    assert resolved.models[0].repo_id == repo and resolved.models[0].revision == snapshot.name
    batch = [regions(1, "0.png", [[10, 12, 60, 70]])]
    assert build_captioner(resolved.config).caption(batch) == build_captioner(vlm(model_dir, image_root)).caption(batch)
    files = {Path(entry["path"]).name: entry for entry in captioner_provenance(resolved)["files"]}
    assert {"config.json", "model.safetensors", "chat_template.jinja", "tokenizer.json"} <= set(files)
    assert {entry["revision"] for entry in files.values()} == {snapshot.name}


def test_an_explicit_device_stays_and_only_runtime_fills_an_unset_one(model_dir, image_root):
    assert resolve_captioner(vlm(model_dir, image_root, device="cpu"), runtime_device="cuda").config.vlm.device == "cpu"
    assert resolve_captioner(vlm(model_dir, image_root), runtime_device="cpu").config.vlm.device == "cpu"


def test_a_changed_chat_template_or_weights_changes_the_captioner_digest(model_dir, image_root, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in model_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    digest = captioner_provenance(resolve_captioner(vlm(copy, image_root)))["sha256"]
    assert digest == captioner_provenance(resolve_captioner(vlm(model_dir, image_root)))["sha256"]
    (copy / "chat_template.jinja").write_text((copy / "chat_template.jinja").read_text() + " ")
    assert captioner_provenance(resolve_captioner(vlm(copy, image_root)))["sha256"] != digest


def test_the_template_enters_the_fingerprint_of_the_vlm_labeler_only():
    config = PseudoLabelsConfig()
    vlm_config = dataclasses.replace(config, captioner=dataclasses.replace(config.captioner, name="vlm"))

    def with_prompt(base: PseudoLabelsConfig, **settings) -> PseudoLabelsConfig:
        section = dataclasses.replace(base.captioner.vlm, **settings)
        return dataclasses.replace(base, captioner=dataclasses.replace(base.captioner, vlm=section))

    assert with_prompt(vlm_config, crop_prompt="Name it.").content_hash() != vlm_config.content_hash()
    assert with_prompt(vlm_config, region_prompt="box").content_hash() != vlm_config.content_hash()
    assert with_prompt(vlm_config, device="cpu").content_hash() == vlm_config.content_hash()  # how, not what
    assert with_prompt(config, crop_prompt="Name it.").content_hash() == config.content_hash()  # clipcap runs


@pytest.mark.parametrize("settings, key", [
    ({"model": "none/such-model"}, "captioner.vlm.model"),
    ({"image_root": "/no/such/folder"}, "captioner.vlm.image_root"),
    ({"box_prompt": "What is at {where}?"}, "captioner.vlm.box_prompt"),
    ({"crop_prompt": "What is {"}, "captioner.vlm.crop_prompt")])
def test_bad_settings_are_errors_naming_the_key_before_any_model_loads(model_dir, image_root, settings, key):
    section = {"model": str(model_dir), "image_root": str(image_root), **settings}
    with pytest.raises((ValueError, FileNotFoundError), match=key.replace(".", r"\.")):
        resolve_captioner(CaptionerSection(name="vlm", vlm=VlmSection(**section)))


@pytest.mark.parametrize("setting", ["captioner.vlm.regions_per_batch=0", "captioner.vlm.max_new_tokens=0",
                                     "captioner.vlm.context_scale=0", "captioner.vlm.box_line_width=0.7"])
def test_out_of_range_settings_are_config_errors_naming_the_key(setting):
    from schemas.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=setting.split("=")[0].replace(".", r"\.")):
        load_config(PseudoLabelsConfig, overrides=[setting])


def test_a_model_that_is_not_an_image_text_model_is_refused(tmp_path, image_root):
    with pytest.raises(ValueError, match=r"not an image-text-to-text model.*captioner\.vlm\.model"):
        resolve_captioner(vlm(write_tiny_gpt2_dir(tmp_path / "gpt2"), image_root))


def test_a_processor_without_chat_template_says_which_key_to_change(model_dir, image_root, tmp_path):
    copy = tmp_path / "no-template"
    copy.mkdir()
    for path in model_dir.iterdir():
        if path.name != "chat_template.jinja":
            (copy / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="captioner.vlm.chat_template=false"):
        build_captioner(vlm(copy, image_root))
    assert build_captioner(vlm(copy, image_root, chat_template=False)).model.format("What?") == "What?"


def test_box_views_are_the_whole_image_and_each_prompt_names_its_box(model_dir, image_root):
    captioner = build_captioner(vlm(model_dir, image_root, region_prompt="box"))
    views = captioner._views(regions(1, "0.png", [[10, 12, 60, 70], [40, 30, 120, 110]]))
    with Image.open(image_root / "0.png") as image:
        assert [view.size for view, _ in views] == [image.size, image.size]
    assert views[0][1] != views[1][1] and "(" in views[0][1]
