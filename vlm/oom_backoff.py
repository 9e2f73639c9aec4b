"""A batch size that halves when the device runs out of memory, instead of failing the job.

Batch sizes are set for the biggest device a config expects; a smaller GPU (or one shared with another process)
then runs out of memory on the first big batch. The step is retried at half the size, which then stays: memory use
per batch does not shrink later in a run, so growing back would only fail again.
"""
from __future__ import annotations

import gc
import logging
import traceback
from typing import Callable, TypeVar

import torch

T = TypeVar("T")
LOG = logging.getLogger(__name__)
# c10's message when a host allocation fails; torch raises it as a plain RuntimeError, not OutOfMemoryError.
HOST_ALLOCATION_FAILED = "DefaultCPUAllocator: can't allocate memory"


def is_out_of_memory(error: BaseException) -> bool:
    """A device (torch.OutOfMemoryError) or host allocation that failed."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and HOST_ALLOCATION_FAILED in str(error))


def release_cached_memory() -> None:
    """Return what the failed step left behind: its tensors (garbage), then the CUDA caching allocator's blocks."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class BatchBackoff:
    """`size` items per step, halved on each out-of-memory error down to 1 (then the error is raised)."""

    def __init__(self, size: int, what: str):
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size} ({what})")
        self.size = size
        self.what = what  # e.g. "crops per forward (runtime.max_batch_size)", for the log line
        self.backoffs = 0

    def halve(self, error: BaseException) -> None:
        """Record an out-of-memory error: halve the size or, at 1, raise the error."""
        if self.size == 1:
            raise error
        self.size = max(1, self.size // 2)
        self.backoffs += 1
        # The traceback's frames hold the failed step's tensors; clear their locals so the memory can be returned.
        traceback.clear_frames(error.__traceback__)
        release_cached_memory()
        LOG.warning("out of memory (%s); retrying with %s = %d", str(error).splitlines()[0][:160], self.what,
                    self.size)

    def run(self, count: int, step: Callable[[int, int], T]) -> list[T]:
        """`step(start, stop)` over [0, count) in runs of at most `size`; a run that runs out of memory is retried
        smaller. Returns the steps' results in order."""
        results, start = [], 0
        while start < count:
            stop = min(start + self.size, count)
            try:
                results.append(step(start, stop))
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not is_out_of_memory(error):
                    raise
                self.halve(error)
                continue
            start = stop
        return results
