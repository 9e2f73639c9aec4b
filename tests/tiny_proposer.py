"""A tiny proposal network with random weights, saved as the training engine saves a proposer run's checkpoint
(`detector` weights and the run's `config` with its `proposer` section), for the jobs that load one."""
from __future__ import annotations

from pathlib import Path

import torch

from schemas.config import to_dict
from trainers.proposer.config import ProposalOutputConfig, ProposerConfig
from trainers.proposer.network import ProposalNetwork


def save_tiny_proposer(path: Path, seed: int = 0, top_k: int = 20) -> Path:
    """The ShapesOV demo network (tiny backbone, 128 px) initialised from `seed`, at `path`."""
    torch.manual_seed(seed)
    config = ProposerConfig(output=ProposalOutputConfig(top_k=top_k))
    network = ProposalNetwork.from_config(config.network)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"detector": network.state_dict(), "config": {"method": "proposer", "proposer": to_dict(config)}},
               path)
    return path
