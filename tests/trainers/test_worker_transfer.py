"""A batch that crosses from loader workers as numpy arrays arrives as the batch `collate_samples` gives: the same
keys, types, dtypes and values, tensors again."""
import numpy as np
import torch
from torch.utils.data import DataLoader

from trainers.config import StreamConfig
from trainers.data.streaming import StoreDetectionDataset, collate_samples
from trainers.data.worker_transfer import collate_for_transfer, received_batch


def assert_same_batch(got, expected):
    assert type(got) is type(expected)
    if isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert torch.equal(got, expected)  # a copy of the same bytes: exact
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same_batch(got[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert_same_batch(a, b)
    else:
        assert got == expected


def test_batches_from_two_workers_arrive_as_collate_samples_gives_them(store_and_images):
    root, images = store_and_images
    dataset = StoreDetectionDataset(root, images, {3: 0}, StreamConfig(image_size=32, shuffle_buffer=0))

    def batches(collate, received, workers):
        loader = DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=collate)
        return sorted((received(b) for b in loader), key=lambda b: b["image_id"])

    crossed = batches(collate_for_transfer, lambda b: b, 2)
    assert isinstance(crossed[0]["image"][0], np.ndarray)  # what crossed the workers' pipes
    for workers in (2, 0):  # each worker makes its own batches: compare like with like
        assert_same_batch(batches(collate_for_transfer, received_batch, workers),
                          batches(collate_samples, lambda b: b, workers))


def test_tensors_numpy_cannot_hold_cross_as_tensors():
    sample = {"half": torch.ones(2, dtype=torch.bfloat16), "names": ["red star"], "image_id": 3,
              "image_embedding": torch.zeros(4)}
    received = received_batch(collate_for_transfer([sample]))
    assert received["half"][0].dtype == torch.bfloat16 and torch.equal(received["half"][0], sample["half"])
    assert received["names"] == [["red star"]] and received["image_id"] == [3]
    assert received["image_embedding"].shape == (1, 4)
