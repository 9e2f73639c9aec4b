"""Images and base boxes as training samples of the proposal network, in the order the training engine reads them.

Each image is decoded once per epoch (paths resolved inside the image root), then flipped and transposed with the
probabilities of `proposer.data` (ImageAugmentation); the network resizes. An image that cannot be used (missing,
corrupt, not the size its annotations give) becomes an UnreadableImage naming the file: the batch goes on without it
and the trainer says so, since one bad file among thousands should not end a long run.

`BaseBoxStream` shuffles the images per epoch (seed, epoch), gives each process its share and each loader worker
whole batches in turn, and starts an epoch after any number of batches, so a resumed run reads the very next batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from trainers.data.image_tensors import ImageFileError, load_image_tensor
from trainers.data.transforms import horizontal_flip, transpose, vertical_flip
from trainers.distributed import global_rank, global_world_size
from trainers.proposer.base_boxes import BaseBoxes

IMAGE_ROOT_KEY = "proposer.data.image_root"


@dataclass(frozen=True)
class ImageAugmentation:
    """Probabilities of a horizontal flip, a vertical flip and a transposition, drawn independently."""

    horizontal_flip: float = 0.5
    vertical_flip: float = 0.0
    transpose: float = 0.0

    def apply(self, rng: np.random.Generator, image: torch.Tensor, boxes: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        draws = rng.random(3)  # always three draws, so each transform's coin is the same whatever the others say
        for draw, probability, transform in zip(draws, (self.horizontal_flip, self.vertical_flip, self.transpose),
                                                (horizontal_flip, vertical_flip, transpose)):
            if draw < probability:
                image, moved = transform(image, {"boxes": boxes})
                boxes = moved["boxes"]
        return image, boxes


@dataclass(frozen=True)
class TrainingSample:
    image: torch.Tensor  # (3, H, W) float in [0, 1], the image as stored after its augmentation
    boxes: torch.Tensor  # (G, 4) float32 xyxy in its pixels
    image_id: int


@dataclass(frozen=True)
class UnreadableImage:
    image_id: int
    file_name: str
    reason: str


@dataclass(frozen=True)
class TrainingBatch:
    images: list[torch.Tensor]
    boxes: list[torch.Tensor]
    image_ids: list[int]
    unreadable: list[UnreadableImage]


class BaseBoxDataset(Dataset):
    """Sample i = image i of `base_boxes`; the augmentation of (seed, epoch, i) is fixed, so a resumed epoch
    repeats it."""

    def __init__(self, base_boxes: BaseBoxes, image_root: str, augmentation: ImageAugmentation, seed: int = 0):
        self.base_boxes = base_boxes
        self.image_root = image_root
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Call before creating the epoch's loader (workers copy the dataset when they start)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base_boxes.images)

    def __getitem__(self, index: int) -> TrainingSample | UnreadableImage:
        item = self.base_boxes.images[index]
        record = item.record
        try:
            image = load_image_tensor(self.image_root, record.file_name, record.image_id, IMAGE_ROOT_KEY)
        except ImageFileError as error:
            return UnreadableImage(record.image_id, record.file_name, str(error))
        if tuple(image.shape[-2:]) != (record.height, record.width):
            return UnreadableImage(record.image_id, record.file_name,
                                   f"decodes to {image.shape[-1]}x{image.shape[-2]} but {self.base_boxes.source} "
                                   f"says {record.width}x{record.height}; its boxes would not fit the pixels")
        rng = np.random.default_rng((self.seed, self.epoch, index))
        image, boxes = self.augmentation.apply(rng, image, torch.from_numpy(item.boxes))
        return TrainingSample(image, boxes, record.image_id)


def collate_samples(samples: list[TrainingSample | UnreadableImage]) -> TrainingBatch:
    """A loader's list of samples → one batch; unreadable images are set apart, not dropped silently."""
    good = [s for s in samples if isinstance(s, TrainingSample)]
    return TrainingBatch([s.image for s in good], [s.boxes for s in good], [s.image_id for s in good],
                         [s for s in samples if isinstance(s, UnreadableImage)])


class BaseBoxStream(IterableDataset):
    """The samples of `images` for the engine's DataLoader: epoch order a permutation drawn from (seed, epoch),
    process r of W takes every W-th image of it, and loader worker w of N yields that share's batches w, w + N, …
    (the DataLoader takes batches from its workers round-robin, so they arrive in order)."""

    def __init__(self, images: BaseBoxDataset, batch_size: int, seed: int = 0):
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.batches_done = 0

    def set_position(self, epoch: int, batches_done: int = 0) -> None:
        self.epoch, self.batches_done = epoch, batches_done
        self.images.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[TrainingSample | UnreadableImage]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.images))
        share = order[global_rank()::global_world_size()]
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        batch_starts = range(self.batches_done * self.batch_size, len(share), self.batch_size)
        for start in list(batch_starts)[worker::workers]:
            for index in share[start:start + self.batch_size]:
                yield self.images[int(index)]
