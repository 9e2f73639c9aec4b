"""How a batch crosses from a DataLoader worker to the training process: as numpy arrays, turned back into tensors.

A torch tensor in a worker's batch crosses as a shared-memory file descriptor that the training process receives
through a socket handshake with the worker (torch.multiprocessing's `file_descriptor` strategy, the default on
Linux), one handshake per tensor; a detection batch holds about ten tensors per image. A numpy array is pickled by
value into the worker's pipe: one copy of its bytes. `python -m bench.trainer` measures the training process's
receive time per batch both ways in one run (bench/PERFORMANCE.md, "Trainer")."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainers.data.streaming import collate_samples


def _to_numpy(value: Any) -> Any:
    # bfloat16 has no numpy dtype: such a tensor crosses as a tensor.
    if isinstance(value, torch.Tensor) and value.dtype != torch.bfloat16 and not value.requires_grad:
        return value.numpy()
    if isinstance(value, dict):
        return {key: _to_numpy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(item) for item in value)
    return value


def _to_tensors(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(value)
    if isinstance(value, dict):
        return {key: _to_tensors(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_tensors(item) for item in value)
    return value


def collate_for_transfer(samples: list[dict]) -> dict:
    """The DataLoader's collate_fn: `collate_samples`, with every tensor as a numpy array sharing its memory."""
    return _to_numpy(collate_samples(samples))


def received_batch(batch: dict) -> dict:
    """What `collate_for_transfer` made, with its numpy arrays as tensors again (no copy): the batch
    `collate_samples` would have given."""
    return _to_tensors(batch)
