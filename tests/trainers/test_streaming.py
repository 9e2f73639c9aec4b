"""The streaming dataset over a real store: every image once per epoch across ranks and workers,
boxes moved with their pixels, exact skip for resume."""
import itertools

import numpy as np
import torch
from torch.utils.data import DataLoader

from featurestore.reader import StoreReader
from tests.featurestore.store_factory import write_store
from trainers.data.batching import to_detector_inputs
from trainers.data.partition import shards_for
from trainers.config import StreamConfig
from trainers.data.streaming import StoreDetectionDataset, batches_before, collate_samples
from trainers.data.transforms import horizontal_flip


def test_partition_covers_every_shard_once():
    shards = list(range(11))
    for world, workers in [(1, 1), (2, 1), (2, 3), (3, 2)]:
        seen = [s for rank, worker in itertools.product(range(world), range(workers))
                for s in shards_for(shards, rank, world, worker, workers, epoch=5)]
        assert sorted(seen) == shards


def test_every_image_once_per_epoch_with_workers(store_and_images):
    root, images = store_and_images
    dataset = StoreDetectionDataset(root, images, {3: 0}, StreamConfig(shuffle_buffer=4))
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_samples)
    ids = [i for batch in loader for i in batch["image_id"]]
    expected = StoreReader(root).read_table("images", ["image_id"]).column("image_id").to_pylist()
    assert sorted(ids) == sorted(expected)


def test_sample_fields_and_pseudo_labels(store_and_images):
    root, images = store_and_images
    config = StreamConfig(image_size=32, flip_probability=0.0, shuffle_buffer=0)
    sample = next(iter(StoreDetectionDataset(root, images, {3: 0}, config)))
    assert sample["image"].shape == (3, 24, 32)  # 64 x 48 resized so the longest side is 32
    assert sample["labels"].tolist() == [0]
    assert sample["names"] == [("red star", "star")]  # the GT region's regions.names
    assert sample["gt_embeddings"].shape == (1, 16) and sample["pseudo_embeddings"].shape == (2, 16)
    assert sample["pseudo_labels"] == ["star", "star"]
    # The stored score s and the label's cosine (store_factory writes 0.875 and 0.375), for eq. 5 weights.
    assert sample["pseudo_scores"].tolist() == [0.875, 0.875] and sample["pseudo_cos"].tolist() == [0.375, 0.375]
    torch.testing.assert_close(sample["boxes"], torch.tensor([[0.0, 0.0, 5.0, 6.0]]))  # (0,0,10,12) * 0.5


def test_detector_inputs_carry_the_object_names_of_the_gt_boxes(store_and_images):
    root, images = store_and_images
    dataset = StoreDetectionDataset(root, images, {3: 0}, StreamConfig(image_size=32, shuffle_buffer=0))
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_samples)))
    inputs = to_detector_inputs(batch)
    assert inputs.object_names == [[("red star", "star")], [("red star", "star")]]
    del batch["names"]  # a batch from elsewhere without names: every box unnamed
    assert to_detector_inputs(batch).object_names == [[None], [None]]


def test_flip_moves_boxes_with_pixels():
    image = torch.zeros(3, 10, 20)
    image[:, 2:5, 1:4] = 1.0  # an object at x 1..4
    flipped, boxes = horizontal_flip(image, {"boxes": torch.tensor([[1.0, 2.0, 4.0, 5.0]])})
    x1, y1, x2, y2 = boxes["boxes"][0].int().tolist()
    assert (x1, x2) == (16, 19)
    assert flipped[:, y1:y2, x1:x2].min() == 1.0 and flipped.sum() == image.sum()


def test_resume_skips_exactly_the_batches_already_seen(store_and_images):
    root, images = store_and_images
    config = StreamConfig(image_size=32, shuffle_buffer=5, seed=3)

    def ids_from(batches_done):
        dataset = StoreDetectionDataset(root, images, {3: 0}, config, batch_size=2)
        dataset.set_position(epoch=1, batches_done=batches_done)
        loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_samples)
        return [batch["image_id"] for batch in loader]

    full = ids_from(0)
    assert ids_from(3) == full[3:]


def test_batches_before_round_robin():
    assert [batches_before(5, w, 2) for w in range(2)] == [3, 2]
    assert [batches_before(1, w, 3) for w in range(3)] == [1, 0, 0]
    assert np.sum([batches_before(7, w, 3) for w in range(3)]) == 7


def test_streams_an_s3_store_across_ranks_and_workers(s3_bucket, store_and_images, monkeypatch):
    """The same store on S3 (moto on loopback): two ranks × two DataLoader workers each read their own shards
    from the bucket and together see every image once, with the same samples as the local store gives."""
    local, images = store_and_images
    url = write_store(f"{s3_bucket}/store", shards=4)
    config = StreamConfig(image_size=32, flip_probability=0.0, shuffle_buffer=0)

    def samples(root, rank):
        monkeypatch.setattr("trainers.data.streaming._rank_and_world", lambda: (rank, 2))
        loader = DataLoader(StoreDetectionDataset(root, images, {3: 0}, config), batch_size=2, num_workers=2,
                            collate_fn=collate_samples)
        return {image_id: (image, boxes) for batch in loader
                for image_id, image, boxes in zip(batch["image_id"], batch["image"], batch["pseudo_boxes"])}

    per_rank = [samples(url, rank) for rank in range(2)]
    assert not per_rank[0].keys() & per_rank[1].keys()
    streamed = {**per_rank[0], **per_rank[1]}
    expected = {**samples(local, 0), **samples(local, 1)}
    assert sorted(streamed) == sorted(expected) and len(streamed) == 12
    for image_id, (image, boxes) in expected.items():
        torch.testing.assert_close(streamed[image_id][0], image)
        torch.testing.assert_close(streamed[image_id][1], boxes)
