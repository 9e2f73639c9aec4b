"""Open-Det through the one training loop (method=opendet): streamed batches, steps, checkpoint, resume."""
import pytest
import torch

from tests.trainers.test_loop import step_losses, tiny_config, tiny_store  # noqa: F401 (tiny_store is a fixture)
from trainers.loop import train
from trainers.methods import METHODS, training_method
from trainers.opendet.step import named_targets

TINY_OPENDET = {"method": "opendet", "opendet.detector.image_size": 64, "opendet.detector.hidden_dim": 32,
                "opendet.detector.ffn_dim": 64, "opendet.detector.encoder_layers": 1,
                "opendet.detector.decoder_layers": 3, "opendet.detector.max_queries": 20,
                "opendet.name_generator.tiny_d_model": 32, "opendet.name_generator.tiny_d_ff": 64,
                "opendet.name_generator.tiny_layers": 1}


def test_boxes_are_named_by_their_class():
    text = torch.eye(3)
    targets = [{"boxes": torch.zeros(2, 4), "labels": torch.tensor([2, 0])}]
    named = named_targets(targets, text, ("circle", "square", "star"))
    assert named[0]["names"] == ["star", "circle"] and torch.equal(named[0]["text_embeddings"], text[[2, 0]])


def test_methods_registry_names_the_choices():
    assert set(METHODS) == {"hdovd", "opendet"}
    with pytest.raises(KeyError, match="hdovd"):
        training_method("yolo")


def test_opendet_trains_checkpoints_and_resumes_exactly(tiny_store, tmp_path):  # noqa: F811
    train(tiny_config(tiny_store, tmp_path / "straight", max_steps=3, **TINY_OPENDET))
    interrupted = train(tiny_config(tiny_store, tmp_path / "resumed", max_steps=2, **TINY_OPENDET))
    state = torch.load(interrupted, weights_only=True)
    assert any(key.startswith("name_generator.t5.") and "lora_" in key for key in state["detector"])
    train(tiny_config(tiny_store, tmp_path / "resumed", max_steps=3, **TINY_OPENDET), resume=interrupted)
    straight, resumed = step_losses(tmp_path / "straight"), step_losses(tmp_path / "resumed")
    assert sorted(resumed) == [1, 2, 3]
    assert resumed[3] == pytest.approx(straight[3], rel=1e-4)
    lines = (tmp_path / "straight" / "scalars.jsonl").read_text()
    for term in ("loss_alignment", "loss_binary", "loss_distill", "loss_name", "loss_name_denoise"):
        assert term in lines
