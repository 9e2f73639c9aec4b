"""Build a model without drawing the random weights that its checkpoint replaces right after.

Building open_clip's ViT-B-32 spends most of its time in `torch.nn.init` (0.75-0.9 s of 0.9-1.2 s on 2 cores; a
checkpoint load adds 0.1-0.3 s), drawing weights that a strict `load_state_dict` then overwrites. Each Beam worker
pays that on its start, inside the job's wall clock (issue 29). Inside `random_init_skipped()` the initialisers of
`torch.nn.init` leave their tensor as allocated; the caller must load a checkpoint strictly afterwards, which sets
every parameter and persistent buffer (the only tensors those initialisers touch).

The initialisers are module attributes, so the switch is process-wide while the block runs: a lock keeps two such
blocks apart, and nothing else in a process that loads models builds a randomly initialised one at the same time.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

# Every in-place initialiser torch's layers and open_clip's init_parameters call (nn.Linear, Conv, LayerNorm,
# Embedding, MultiheadAttention; normal_ and constant_ in open_clip's towers).
INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                "sparse_")
_LOCK = threading.Lock()


def _leave_as_allocated(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


@contextlib.contextmanager
def random_init_skipped() -> Iterator[None]:
    """While the block runs, torch.nn.init's initialisers return their tensor untouched; restored on exit."""
    with _LOCK:
        saved = {name: getattr(torch.nn.init, name) for name in INITIALISERS}
        try:
            for name in INITIALISERS:
                setattr(torch.nn.init, name, _leave_as_allocated)
            yield
        finally:
            for name, initialiser in saved.items():
                setattr(torch.nn.init, name, initialiser)
