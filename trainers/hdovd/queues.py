"""A fixed-length FIFO memory of embeddings, the source of extra negatives for contrastive distillation.

HD-OVD pads the negatives of its contrastive losses (eq. 1 and eq. 8) with embeddings of earlier batches kept in
a memory queue (the paper cites MoCo for the idea). The queue is a module whose state lives in buffers, so it is
saved and restored with `state_dict()` together with the model, and a resumed run sees exactly the same negatives.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class EmbeddingQueue(nn.Module):
    """The `length` most recently pushed embeddings; pushing beyond `length` forgets the oldest first.

    Stored as a ring buffer: `slots` (length, D) float32 and `pushed`, the number of rows pushed since creation.
    """

    def __init__(self, length: int, dim: int):
        super().__init__()
        if length < 0 or dim <= 0:
            raise ValueError(f"EmbeddingQueue needs length >= 0 and dim > 0, got length={length}, dim={dim}")
        self.length = length
        self.dim = dim
        self.register_buffer("slots", torch.zeros(length, dim))
        # int64 scalar buffer, so the fill level and write position survive a checkpoint round trip.
        self.register_buffer("pushed", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(min(int(self.pushed), self.length))

    def contents(self) -> Tensor:
        """The stored embeddings, oldest first: (len(self), D) float32, detached."""
        filled = len(self)
        if filled < self.length or self.length == 0:
            return self.slots[:filled]
        write_position = int(self.pushed) % self.length
        return torch.cat([self.slots[write_position:], self.slots[:write_position]])

    @torch.no_grad()
    def push(self, embeddings: Tensor) -> None:
        """Append `embeddings` (n, D) float, oldest rows of the queue are overwritten once it is full."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"EmbeddingQueue of dim {self.dim} cannot take a tensor of shape {tuple(embeddings.shape)}")
        if self.length == 0 or embeddings.shape[0] == 0:
            return
        rows = embeddings.detach().to(self.slots.dtype)
        total = rows.shape[0]
        if total > self.length:
            # Only the newest `length` rows can survive; the skipped rows still count as pushed, so order stays FIFO.
            rows = rows[-self.length:]
        start = (int(self.pushed) + total - rows.shape[0]) % self.length
        positions = (torch.arange(rows.shape[0], device=self.slots.device) + start) % self.length
        self.slots[positions] = rows
        self.pushed += total
