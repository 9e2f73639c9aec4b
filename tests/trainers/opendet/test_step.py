"""Open-Det through the one training loop (method=opendet): object names as targets, streamed batches, steps,
checkpoint, resume."""
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from schemas.config import ConfigError
from tests.trainers.opendet.tiny_opendet import TINY_OPENDET_SETTINGS
from tests.trainers.training_helpers import step_losses, tiny_config, train_run
from trainers.data.batching import to_detector_inputs
from trainers.data.streaming import StoreDetectionDataset, collate_samples
from trainers.methods import METHODS, training_method
from trainers.opendet.batch_losses import named_targets, pick_object_names, with_pseudo_objects
from trainers.opendet.method import build_opendet
from trainers.store_training import prepare_store_method

TINY_OPENDET = {"method": "opendet", **TINY_OPENDET_SETTINGS}


def test_boxes_are_named_by_their_class():
    text = torch.eye(3)
    targets = [{"boxes": torch.zeros(2, 4), "labels": torch.tensor([2, 0])}]
    named = named_targets(targets, text, ("circle", "square", "star"))
    assert named[0]["names"] == ["star", "circle"] and torch.equal(named[0]["text_embeddings"], text[[2, 0]])


def test_a_box_is_named_by_an_alternative_drawn_uniformly_and_reproducibly():
    boxes = [[("red star", "star", "shape")] * 3000, [None, ("circle",)]]
    picked = pick_object_names(boxes, torch.Generator().manual_seed(5))
    assert picked[1] == [None, "circle"]
    counts = Counter(picked[0])
    assert set(counts) == {"red star", "star", "shape"} and all(900 < n < 1100 for n in counts.values())
    assert picked == pick_object_names(boxes, torch.Generator().manual_seed(5))
    assert picked != pick_object_names(boxes, torch.Generator().manual_seed(6))


def test_draws_come_from_the_training_rng_and_only_where_there_is_a_choice():
    boxes = [[("red star", "star"), ("square", "box")]]
    torch.manual_seed(11)  # what trainers.loop does; checkpoints save this generator's state
    first = [pick_object_names(boxes) for _ in range(8)]
    torch.manual_seed(11)
    assert [pick_object_names(boxes) for _ in range(8)] == first
    assert len({tuple(p[0]) for p in first}) > 1  # a fresh draw each step
    state = torch.get_rng_state()
    assert pick_object_names([[("star",), None]]) == [["star", None]]
    assert torch.equal(torch.get_rng_state(), state)  # stores without names leave the RNG as it was


def test_named_boxes_take_their_name_embedding_and_unnamed_boxes_their_class():
    classes, names = torch.eye(4)[:2], torch.eye(4)[2:]
    targets = [{"boxes": torch.zeros(3, 4), "labels": torch.tensor([0, 1, 1])}]
    named = named_targets(targets, classes, ("circle", "star"), [["red star", None, "star"]], ("red star", "star"),
                          names)
    assert named[0]["names"] == ["red star", "star", "star"]
    assert torch.equal(named[0]["text_embeddings"], torch.eye(4)[[2, 1, 3]])
    with pytest.raises(ValueError, match="no vocab row of kind 'name'"):
        named_targets(targets, classes, ("circle", "star"), [["blue star", None, None]], ("red star", "star"), names)


def test_the_criterion_and_tokenizer_know_the_store_object_names(tiny_store, tmp_path):  # noqa: F811
    config = tiny_config(tiny_store, tmp_path, **TINY_OPENDET)
    model, criterion = build_opendet(config, prepare_store_method(config, torch.device("cpu")))
    assert criterion.object_names == ("red star", "star")
    assert criterion.object_name_embeddings.shape == (2, 16)
    assert "object_name_embeddings" not in criterion.state_dict()  # checkpoints hold no copy of the vocab
    tokenizer = model.name_generator.tokenizer
    assert tokenizer.unk_token_id not in tokenizer("red star")["input_ids"]


def test_methods_registry_names_the_choices():
    assert set(METHODS) == {"hdovd", "opendet", "proposer"}
    with pytest.raises(ConfigError, match="hdovd"):
        training_method("yolo")


def test_opendet_trains_checkpoints_and_resumes_exactly(tiny_store, tmp_path):  # noqa: F811
    train_run(tiny_config(tiny_store, tmp_path / "straight", max_steps=3, **TINY_OPENDET))
    interrupted = train_run(tiny_config(tiny_store, tmp_path / "resumed", max_steps=2, **TINY_OPENDET))
    state = torch.load(interrupted, weights_only=True)
    assert any(key.startswith("name_generator.t5.") and "lora_" in key for key in state["detector"])
    train_run(tiny_config(tiny_store, tmp_path / "resumed", max_steps=3, **TINY_OPENDET), resume=interrupted)
    straight, resumed = step_losses(tmp_path / "straight"), step_losses(tmp_path / "resumed")
    assert sorted(resumed) == [1, 2, 3]
    assert resumed[3] == pytest.approx(straight[3], rel=1e-4)
    lines = (tmp_path / "straight" / "scalars.jsonl").read_text()
    for term in ("loss_alignment", "loss_binary", "loss_distill", "loss_name", "loss_name_denoise"):
        assert term in lines


def test_pseudo_boxes_of_the_stream_become_named_objects(tiny_store, tmp_path):  # noqa: F811
    """The store's pseudo boxes (label "star", s 0.875, proposal score 0.75) join each image's objects."""
    config = tiny_config(tiny_store, tmp_path, **TINY_OPENDET, **{"opendet.loss.pseudo_names": True})
    dataset = StoreDetectionDataset(config.store, config.image_root, {3: 0}, config.stream)
    inputs = to_detector_inputs(next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_samples))))
    named = named_targets(inputs.targets, torch.eye(16)[:1], ("star",))
    merged = with_pseudo_objects(named, inputs.pseudo, inputs.pseudo_names, 0.5)
    for target, pseudo, objects in zip(named, inputs.pseudo, merged):
        assert len(objects["names"]) == len(target["names"]) + len(pseudo["boxes"]) and len(pseudo["boxes"]) > 0
        assert objects["names"][len(target["names"]):] == ["star"] * len(pseudo["boxes"])
        assert objects["weights"][len(target["names"]):].tolist() == pytest.approx([0.875] * len(pseudo["boxes"]))
    assert with_pseudo_objects(named, inputs.pseudo, inputs.pseudo_names, 0.8)[0]["names"] == named[0]["names"]


def test_opendet_trains_with_pseudo_names(tiny_store, tmp_path):  # noqa: F811
    train_run(tiny_config(tiny_store, tmp_path, max_steps=2, **TINY_OPENDET, **{"opendet.loss.pseudo_names": True}))
    assert sorted(step_losses(tmp_path)) == [1, 2]


def test_a_missing_evaluation_encoder_stops_training_before_its_first_step(tiny_store, tmp_path):  # noqa: F811
    config = tiny_config(tiny_store, tmp_path, max_steps=2, **TINY_OPENDET,
                         **{"opendet.inference.name_encoder": "sentence_transformer",
                            "opendet.inference.name_encoder_dir": str(tmp_path / "no-such-encoder")})
    with pytest.raises(FileNotFoundError, match=r"opendet\.inference\.name_encoder_dir"):
        train_run(config)
    assert not (tmp_path / "scalars.jsonl").exists()
