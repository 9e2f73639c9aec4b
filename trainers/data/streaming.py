"""A torch IterableDataset over the store: per shard, images + regions + pseudo_labels zipped in lockstep.

Memory is bounded by one shard's metadata plus the shuffle buffer: images are decoded only when a
sample leaves the buffer, so skipping (for an exact resume) costs no decoding.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from featurestore.storage import StoreLocation
from featurestore.regions import Regions
from trainers.config import StreamConfig
from trainers.data.image_tensors import load_image_tensor
from trainers.data.partition import shards_for
from trainers.data.transforms import horizontal_flip, resize_longest_side

BOX_FIELDS = ("boxes", "pseudo_boxes")


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def batches_before(batches_done: int, worker: int, num_workers: int) -> int:
    """How many of the first `batches_done` batches came from `worker` (DataLoader takes them round-robin)."""
    return (batches_done - worker + num_workers - 1) // num_workers if batches_done > worker else 0


class StoreDetectionDataset(IterableDataset):
    """Yields one training sample per image, streamed shard by shard. Fields (G base GT, P proposals, D dim):

    image (3, H, W) float in [0, 1]; boxes (G, 4) xyxy pixels of the resized image; labels (G,) int64 index
    of the base class; names G × (alternative object names, or None where the store names no object: regions.names);
    gt_embeddings (G, D) CLIP region embeddings; pseudo_boxes (P, 4) the stored proposals
    (pseudo boxes); pseudo_embeddings (P, D); pseudo_labels P × str or None (no pseudo label);
    pseudo_scores (P,) float, the stored score s, NaN where unlabelled; pseudo_cos (P,) float, the picked label's CLIP
    cosine, NaN where unlabelled; pseudo_proposal_scores (P,) float, the class-agnostic proposal score;
    pseudo_text_embeddings (P, D); image_embedding (D,).
    """

    def __init__(self, store: str | Path, image_root: str | Path, category_index: Mapping[int, int],
                 config: StreamConfig = StreamConfig(), batch_size: int = 1):
        self.store = StoreLocation(store).root  # a local folder (Path) or an object-store URL, read per worker
        self.image_root = str(image_root)  # joined with each file name by vlm.images.resolve_image_path
        self.category_index = dict(category_index)
        self.config = config
        self.batch_size = batch_size
        self.epoch = 0
        self.batches_done = 0  # of this epoch, for an exact resume
        reader = StoreReader(self.store)
        self.shards = reader.shards("regions")
        self.has_pseudo_labels = bool(reader.shards("pseudo_labels")) and config.use_pseudo_labels

    def set_position(self, epoch: int, batches_done: int = 0) -> None:
        self.epoch, self.batches_done = epoch, batches_done

    def worker_role(self) -> tuple[int, int]:
        """(role, workers): the DataLoader asks worker 0 first, so after `batches_done` batches the
        worker whose turn it is plays role `batches_done % workers` — roles rotate for an exact resume."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return (worker + self.batches_done) % workers, workers

    def __iter__(self) -> Iterator[dict]:
        rank, world = _rank_and_world()
        role, workers = self.worker_role()
        shards = shards_for(self.shards, rank, world, role, workers, self.epoch, self.config.seed)
        rng = random.Random(hash((self.config.seed, self.epoch, rank, role)) & 0xFFFFFFFF)
        skip = batches_before(self.batches_done, role, workers) * self.batch_size
        reader = StoreReader(self.store)
        records = (record for shard in shards for record in self._shard_records(reader, shard))
        for position, record in enumerate(self._shuffled(records, rng)):
            if position >= skip:
                yield self._load(record)

    # -- records: everything but the pixels ------------------------------------------------------------------
    def _shard_records(self, reader: StoreReader, shard: int) -> Iterator[dict]:
        images = reader.read_shard("images", shard, ["image_id", "file_name", "embedding"])
        tables = ("regions", "pseudo_labels") if self.has_pseudo_labels else ("regions",)
        regions = reader.zip_shard(shard, tables)  # the regions, with their pseudo label columns where labelled
        stored = Regions.from_arrow(regions)
        region_ids, boxes, sources = stored.image_id, stored.box, stored.source
        categories, names = stored.category_id, stored.names
        proposal_scores = np.asarray(stored.proposal_score, dtype=np.float32)  # None → NaN
        embeddings = stored.embedding.astype(np.float32)
        labelled = None
        if self.has_pseudo_labels:
            labelled = np.asarray(regions.column("label").is_valid())
            label_names = regions.column("label").to_pylist()
            scores = regions.column("score").to_numpy(zero_copy_only=False)
            cosines = regions.column("cos").to_numpy(zero_copy_only=False)
            texts = regions.column("text_embedding")
        image_embeddings = embeddings_to_numpy(images.column("embedding")).astype(np.float32)
        dim = embeddings.shape[1]
        for row, (image_id, file_name) in enumerate(zip(images.column("image_id").to_pylist(),
                                                         images.column("file_name").to_pylist())):
            mine = np.flatnonzero(region_ids == image_id)
            gt = [i for i in mine if sources[i] == "gt" and categories[i] in self.category_index]
            proposals = [i for i in mine if sources[i] == "proposal"]
            record = {
                "image_id": image_id, "file_name": file_name, "image_embedding": image_embeddings[row],
                "boxes": boxes[gt], "labels": np.asarray([self.category_index[categories[i]] for i in gt], np.int64),
                "names": [tuple(names[i]) if names[i] else None for i in gt],
                "gt_embeddings": embeddings[gt],
                "pseudo_boxes": boxes[proposals], "pseudo_embeddings": embeddings[proposals],
                "pseudo_proposal_scores": proposal_scores[proposals],
                "pseudo_labels": [None] * len(proposals),
                "pseudo_scores": np.full(len(proposals), np.nan, np.float32),
                "pseudo_cos": np.full(len(proposals), np.nan, np.float32),
                "pseudo_text_embeddings": np.zeros((len(proposals), dim), np.float32),
            }
            if labelled is not None:
                record["pseudo_labels"] = [label_names[i] for i in proposals]
                record["pseudo_scores"] = np.where(labelled[proposals], scores[proposals], np.nan).astype(np.float32)
                record["pseudo_cos"] = np.where(labelled[proposals], cosines[proposals], np.nan).astype(np.float32)
                has_text = [i for i in proposals if labelled[i]]
                if has_text:
                    rows = np.flatnonzero(labelled[proposals])
                    record["pseudo_text_embeddings"][rows] = embeddings_to_numpy(texts.take(has_text))
            yield record

    def _shuffled(self, records: Iterator[dict], rng: random.Random) -> Iterator[dict]:
        size = self.config.shuffle_buffer
        if size <= 1:
            yield from records
            return
        buffer: list[dict] = []
        for record in records:
            buffer.append(record)
            if len(buffer) >= size:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    # -- pixels ---------------------------------------------------------------------------------------------
    def _load(self, record: dict) -> dict:
        # The file is in the store, so a failure here most likely means the image root is wrong (key image_root).
        image = load_image_tensor(self.image_root, record["file_name"], record["image_id"], "image_root")
        boxes = {name: torch.from_numpy(record[name]) for name in BOX_FIELDS}
        image, boxes, _ = resize_longest_side(image, boxes, self.config.image_size)
        # Augmentation drawn per (seed, epoch, image): a resumed run flips exactly as the uninterrupted one.
        augment = random.Random(hash((self.config.seed, self.epoch, record["image_id"])) & 0xFFFFFFFF)
        if augment.random() < self.config.flip_probability:
            image, boxes = horizontal_flip(image, boxes)
        sample = {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                  for key, value in record.items()}
        sample.update(boxes)
        sample["image"] = image
        return sample


def collate_samples(samples: list[dict]) -> dict:
    """List of samples → dict of lists (sizes differ per image); image embeddings stacked to (B, D)."""
    batch = {key: [s[key] for s in samples] for key in samples[0]}
    batch["image_embedding"] = torch.stack(batch["image_embedding"])
    return batch
