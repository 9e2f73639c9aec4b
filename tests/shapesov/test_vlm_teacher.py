"""The ShapesOV instruction-following teacher at a tiny size: trained by our code around a CLIP folder, saved as a
LLaVA that the vlm labeler loads, kept while it verifies, retrained when the CLIP under it or its config changes."""
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.captioners import ImageRegions, build_captioner
from pipelines.pseudo_labels_config import CaptionerSection, VlmSection
from schemas.config import load_config
from shapesov.config import SceneConfig
from shapesov.scenes import sample_scene
from shapesov.teachers.manifest import sha256_file
from shapesov.teachers.vlm_config import VlmTeacherConfig
from shapesov.teachers.vlm_examples import labeler_styles, render_examples
from shapesov.teachers.vlm_teacher import ensure_vlm_teacher, main
from tests.tiny_teachers import write_tiny_clip

TINY = VlmTeacherConfig(train_scenes=3, image_size=64, vocab_size=320, hidden_size=32, intermediate_size=64,
                        num_layers=1, num_heads=2, batch_size=8, steps=4, warmup_steps=2, eval_objects=4)


@pytest.fixture
def teachers(tmp_path):
    write_tiny_clip(tmp_path / "clip")
    return tmp_path


def trained(teachers, cfg=TINY, retrain=False) -> tuple[dict, list[str]]:
    lines = []
    manifest = ensure_vlm_teacher(cfg, teachers, retrain, log=lines.append)
    return manifest, lines


def test_examples_show_each_box_both_ways_with_the_labelers_own_prompts():
    examples = render_examples(0, "teacher_vlm", 2, 1, 0.1, labeler_styles())
    section = VlmSection()
    assert examples.region_prompts[:2] == ["crop", "box"] and len(examples) % 2 == 0
    assert examples.prompts[0] == section.crop_prompt
    assert examples.prompts[1].startswith("What is the object inside the red box at (")
    assert all(answer.startswith("a ") and len(answer.split()) == 3 for answer in examples.answers)
    # The box view is the whole scene; the crop view is smaller.
    assert examples.images[1].size[0] > examples.images[0].size[0]


def test_trained_teacher_is_a_llava_the_vlm_labeler_loads(teachers):
    manifest, lines = trained(teachers)
    assert any("training" in line for line in lines)
    model_dir = teachers / "vlm" / "model"
    assert json.loads((model_dir / "config.json").read_text())["model_type"] == "llava"
    assert manifest["trained_on_clip"] == sha256_file(teachers / "clip" / "open_clip_model.safetensors")
    assert all(sha256_file(teachers / "vlm" / rel) == digest for rel, digest in manifest["files"].items())
    assert set(manifest["report"]) == {"crop", "box"} and manifest["report"]["crop"]["objects"] == 4
    image_root = teachers / "images"
    image_root.mkdir()
    sample_scene(np.random.default_rng(0), SceneConfig()).image.save(image_root / "a.png")
    for region_prompt in ("crop", "box"):
        labeler = build_captioner(CaptionerSection(name="vlm", vlm=VlmSection(
            model=str(model_dir), image_root=str(image_root), region_prompt=region_prompt, max_new_tokens=4)))
        boxes = np.array([[10, 10, 60, 60], [20, 30, 90, 100]], np.float32)
        answers = labeler.caption([ImageRegions(1, "a.png", (0, 1), boxes, np.zeros((2, 4), np.float32),
                                                np.ones(2, np.float32))])
        assert len(answers[0]) == 2 and all(isinstance(answer, str) for answer in answers[0])


def test_a_verified_teacher_is_kept_and_a_new_clip_or_config_retrains_it(teachers):
    first, _ = trained(teachers)
    again, lines = trained(teachers)
    assert again == first and any("kept" in line for line in lines)
    write_tiny_clip(teachers / "clip", seed=1)
    retrained, lines = trained(teachers)
    assert any("another CLIP" in line for line in lines)
    assert retrained["trained_on_clip"] != first["trained_on_clip"]
    _, lines = trained(teachers, dataclasses.replace(TINY, steps=5))
    assert any("another teacher config" in line for line in lines)
    (teachers / "vlm" / "model" / "model.safetensors").write_bytes(b"corrupt")
    _, lines = trained(teachers, dataclasses.replace(TINY, steps=5))
    assert any("does not match its sha256" in line for line in lines)


def test_the_same_config_trains_the_same_weights(teachers, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    shutil.copytree(teachers / "clip", other / "clip")
    first, _ = trained(teachers)
    second, _ = trained(other)
    assert first["files"] == second["files"]


def test_without_a_clip_teacher_the_command_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="make teachers"):
        main(["--teachers", str(tmp_path)])


def test_the_shipped_config_is_the_defaults():
    shipped = Path(__file__).resolve().parents[2] / "configs" / "shapes" / "teacher_vlm.yaml"
    assert load_config(VlmTeacherConfig, shipped) == VlmTeacherConfig()
