"""Teachers: open_clip local-dir and ClipCap save/load round trips, short training runs, determinism, manifest reuse."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoTokenizer

from shapesov.config import SceneConfig
from shapesov.scenes import sample_scene
from shapesov.streams import stream_rng
from shapesov.teachers.build import ensure_teachers, training_config_hash
from shapesov.teachers.clip_model import create_clip, load_local_dir, save_local_dir
from shapesov.teachers.config import BackgroundCropConfig, ClipCapTrainConfig, ClipTrainConfig, TeachersConfig
from shapesov.teachers.crops import crop_window, render_crop_bank, squash_crop, to_model_input
from shapesov.teachers.evaluate import encode_crops
from shapesov.teachers.manifest import read_manifest, verify_teacher
from shapesov.teachers.train_clip import train_clip_on_bank
from shapesov.teachers.train_clipcap import save_clipcap, train_clipcap
from vlm.clipcap import ClipCapCaptioner

TINY_CLIP = ClipTrainConfig(train_scenes=12, crops_per_object=1, batch_size=32, steps=40, warmup_steps=5)
TINY_CLIPCAP = ClipCapTrainConfig(n_embd=32, n_layer=1, n_head=2, batch_size=32, steps=60, warmup_steps=5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Like the teachers' default config: one thread is deterministic and fastest on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bank():
    return render_crop_bank(0, "teacher_clip", TINY_CLIP.train_scenes, 2, TINY_CLIP.image_size, 0.05,
                            background=BackgroundCropConfig())


def _halves(losses: list[float]) -> tuple[float, float]:
    k = len(losses) // 4
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def test_clip_local_dir_round_trip_and_preprocess(tmp_path, bank):
    torch.manual_seed(0)
    model = create_clip(TINY_CLIP.model_name, TINY_CLIP.init_logit_scale).eval()
    files = save_local_dir(model, TINY_CLIP.model_name, TINY_CLIP.image_size, tmp_path / "clip")
    assert sorted(p.name for p in files) == ["open_clip_config.json", "open_clip_model.safetensors"]
    loaded, preprocess, tokenizer = load_local_dir(tmp_path / "clip")
    torch.testing.assert_close(encode_crops(loaded, bank), encode_crops(model, bank), rtol=0, atol=0)
    text = tokenizer(["a photo of a star."])
    torch.testing.assert_close(loaded.encode_text(text), model.encode_text(text), rtol=0, atol=0)
    # The saved preprocess config (squash, bicubic, OpenAI mean/std) is what the teachers trained and are measured on.
    scene = sample_scene(stream_rng(0, "teacher_eval", 0), SceneConfig())
    x, y, w, h = scene.objects[0].bbox
    window = crop_window((x, y, x + w, y + h), "tight", scene.width, scene.height)
    ours = to_model_input(torch.from_numpy(squash_crop(scene.image, window, 32))[None],
                          loaded.visual.image_mean, loaded.visual.image_std)
    theirs = preprocess(scene.image.crop(window))[None]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_short_clip_training_lowers_the_loss_and_repeats_exactly(bank):
    model, losses = train_clip_on_bank(TINY_CLIP, bank, seed=0, log=lambda _: None)
    first, last = _halves(losses)
    assert last < first - 0.1, (first, last)
    short = dataclasses.replace(TINY_CLIP, steps=5)
    one, one_losses = train_clip_on_bank(short, bank, seed=0, log=lambda _: None)
    two, two_losses = train_clip_on_bank(short, bank, seed=0, log=lambda _: None)
    assert one_losses == two_losses
    for (name, a), (_, b) in zip(one.state_dict().items(), two.state_dict().items()):
        assert torch.equal(a, b), name


def test_clipcap_training_and_official_layout_save_load(tmp_path, bank):
    torch.manual_seed(0)
    clip = create_clip(TINY_CLIP.model_name, TINY_CLIP.init_logit_scale).eval()
    embeddings = encode_crops(clip, bank)
    model, tokenizer, losses = train_clipcap(TINY_CLIPCAP, embeddings, bank.shape_ids, bank.colour_ids,
                                             bank.background_ids, seed=0, log=lambda _: None)
    first, last = _halves(losses)
    assert last < first * 0.7, (first, last)
    save_clipcap(model, tokenizer, tmp_path / "clipcap")
    assert AutoTokenizer.from_pretrained(tmp_path / "clipcap" / "gpt2").encode("a red star.") == \
        tokenizer.encode("a red star.")
    state = torch.load(tmp_path / "clipcap" / "clipcap_mlp.pt", weights_only=True)
    assert {"clip_project.model.0.weight", "clip_project.model.2.weight", "gpt.transformer.wte.weight"} <= set(state)
    loaded = ClipCapCaptioner.from_paths(tmp_path / "clipcap" / "clipcap_mlp.pt", tmp_path / "clipcap" / "gpt2",
                                         normalize_prefix=True)
    in_memory = ClipCapCaptioner(model, tokenizer)
    assert loaded.caption(embeddings[:12], beam_size=2, max_tokens=8) == \
        in_memory.caption(embeddings[:12], beam_size=2, max_tokens=8)


def test_teachers_are_reused_or_copied_when_their_sha256_matches(tmp_path):
    cfg = TeachersConfig(clip=dataclasses.replace(TINY_CLIP, steps=3, train_scenes=4),
                         clipcap=dataclasses.replace(TINY_CLIPCAP, steps=3))
    messages: list[str] = []
    first = ensure_teachers(cfg, tmp_path / "a", assets=None, retrain=False, log=messages.append)
    assert "training both teachers (seed 0)" in messages
    messages.clear()
    assert ensure_teachers(cfg, tmp_path / "a", None, False, messages.append)["teachers"] == first["teachers"]
    assert all("kept" in m for m in messages), messages
    messages.clear()
    ensure_teachers(cfg, tmp_path / "b", assets=tmp_path / "a", retrain=False, log=messages.append)
    assert all("copied" in m for m in messages), messages
    messages.clear()
    other_report = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, beam_size=1))
    ensure_teachers(other_report, tmp_path / "b", assets=None, retrain=False, log=messages.append)
    assert all("kept" in m for m in messages), "report settings must not retrain the teachers"
    weights = tmp_path / "b" / "clip" / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    problems = verify_teacher(tmp_path / "b", read_manifest(tmp_path / "b"), "clip", training_config_hash(cfg))
    assert problems and "sha256" in problems[0]


def test_the_report_measures_crops_of_nothing_as_the_pipeline_parses_captions(tmp_path):
    """On a small generated val split, with tiny teachers: in the pipeline's crop mode, the counts of crops of nothing
    are those of the boxes drawn on the val images, and every share is a share of those crops' captions."""
    from schemas.config import to_dict
    from shapesov.config import ShapesConfig
    from shapesov.dataset import write_dataset
    from shapesov.teachers.crops import dataset_background_crops
    from shapesov.teachers.report import teacher_report

    shapes = ShapesConfig(train_images=1, val_images=6)
    write_dataset(tmp_path / "shapes", shapes, to_dict(shapes))
    cfg = TeachersConfig(clip=dataclasses.replace(TINY_CLIP, steps=3, train_scenes=4),
                         clipcap=dataclasses.replace(TINY_CLIPCAP, steps=3))
    ensure_teachers(cfg, tmp_path / "teachers", assets=None, retrain=False, log=lambda _: None)
    report = teacher_report(tmp_path / "teachers", tmp_path / "shapes", dataclasses.replace(cfg.eval, beam_size=1))
    assert list(report["background_crops"]) == [cfg.eval.pipeline_crop_mode]  # the crops the pipeline cuts
    for mode in report["background_crops"]:
        figures = report["background_crops"][mode]
        bank = dataset_background_crops(tmp_path / "shapes", "val.json", "val", mode, 32, cfg.background, cfg.seed)
        assert sum(figures["crops_of_nothing"].values()) == int((~bank.frames_object).sum()) > 0
        assert figures["framing_crops"] == int(bank.frames_object.sum())
        assert 0.0 <= figures["no_object_noun_all"] <= 1.0 and set(figures["no_object_noun"]) <= {
            "anywhere", "part", "loose"}
        assert 0.0 <= figures["clip_object_vs_nothing_auc"] <= 1.0
    summary = report["summary"]
    assert summary["pipeline_crop_mode"] == "context"
    assert summary["clipcap_no_object_noun_on_nothing"] == report["background_crops"]["context"]["no_object_noun_all"]
