"""Which shards this process reads: split over DDP ranks, then over DataLoader workers.

Every shard goes to exactly one (rank, worker) pair, so every image is seen exactly once per epoch
across the whole job. The order of shards is reshuffled per epoch with a seed all ranks share.
"""
from __future__ import annotations

import random
from typing import Sequence


def shards_for(shards: Sequence[int], rank: int, world_size: int, worker: int, num_workers: int,
               epoch: int = 0, seed: int = 0, shuffle: bool = True) -> list[int]:
    """Shards of one (rank, worker) for `epoch`; the union over all pairs is `shards`, with no overlap."""
    if not 0 <= rank < world_size or not 0 <= worker < num_workers:
        raise ValueError(f"rank {rank}/{world_size}, worker {worker}/{num_workers} out of range")
    order = sorted(shards)
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
    slot, slots = rank * num_workers + worker, world_size * num_workers
    return order[slot::slots]
