"""Pseudo boxes whose caption named no object (a row with no label and score 0) are skipped by the training of both
methods: HD-OVD's pseudo classes and distillation targets, Open-Det's pseudo names."""
import pytest
import torch
from torch.utils.data import DataLoader

from tests.trainers.conftest import write_tiny_store
from tests.trainers.opendet.tiny_opendet import TINY_OPENDET_SETTINGS
from tests.trainers.training_helpers import step_losses, tiny_config, train_run
from trainers.data.batching import to_detector_inputs
from trainers.data.streaming import StoreDetectionDataset, collate_samples
from trainers.hdovd.batch_losses import with_class_weights
from trainers.hdovd.pseudo_classes import PseudoClassifierColumns
from trainers.opendet.batch_losses import named_targets, with_pseudo_objects
from trainers.pseudo_weights import PseudoBoxWeighting

# store_factory: regions 1 and 2 of every image are pseudo boxes labelled "star" (score 0.875); these name no object.
# Image 1000 keeps one labelled box, image 1001 none.
NO_OBJECT = frozenset({(1000, 2), (1001, 1), (1001, 2), (2000, 1)})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_tiny_store(tmp_path_factory.mktemp("no-object"), no_object=NO_OBJECT)


def first_batch(root, config):
    dataset = StoreDetectionDataset(config.store, config.image_root, {3: 0}, config.stream)
    return next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate_samples)))


def test_rows_with_no_object_reach_the_batch_with_no_label_and_leave_it_before_the_losses(store, tmp_path):
    config = tiny_config(store, tmp_path, **{"stream.shuffle_buffer": 0})
    batch = first_batch(store, config)
    assert batch["image_id"] == [1000, 1001, 1002]
    assert batch["pseudo_labels"] == [["star", None], [None, None], ["star", "star"]]
    assert torch.isnan(batch["pseudo_scores"][1]).all() and batch["pseudo_scores"][0][0] == 0.875
    inputs = to_detector_inputs(batch)
    # Only the labelled pseudo boxes go on: as classes (HD-OVD), names (Open-Det) and distillation targets.
    assert [len(p["boxes"]) for p in inputs.pseudo] == [1, 0, 2] and inputs.pseudo_names == ["star"]
    torch.testing.assert_close(inputs.pseudo[0]["boxes"], batch["pseudo_boxes"][0][:1])
    assert len(inputs.region_embeddings) == 3 + 3  # one GT box per image, then the 3 labelled pseudo boxes
    weighting = PseudoBoxWeighting()
    detector_pseudo = [with_class_weights(p, weighting) for p in inputs.pseudo]
    columns = PseudoClassifierColumns.from_batch(detector_pseudo, [p["boxes"] for p in inputs.pseudo],
                                                 torch.eye(16)[:1])
    assert [len(c) for c in columns.columns] == [1, 0, 2] and columns.embeddings.shape[0] == 1 + 1
    assert torch.cat(columns.weights).tolist() == pytest.approx([0.875] * 3)
    named = named_targets(inputs.targets, torch.eye(16)[:1], ("star",))
    objects = with_pseudo_objects(named, inputs.pseudo, inputs.pseudo_names, 0.5)
    assert [o["names"] for o in objects] == [["star", "star"], ["star"], ["star", "star", "star"]]


@pytest.mark.parametrize("method", ["hdovd", "opendet"])
def test_both_methods_train_on_a_store_with_boxes_that_name_no_object(store, tmp_path, method):
    settings = ({"method": "opendet", **TINY_OPENDET_SETTINGS, "opendet.loss.pseudo_names": True}
                if method == "opendet" else {})
    train_run(tiny_config(store, tmp_path, max_steps=2, **settings))
    losses = step_losses(tmp_path)
    assert sorted(losses) == [1, 2] and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
