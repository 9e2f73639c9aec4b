"""The trained proposal network as a function of decoded images: load once, then batch after batch of images →
per-image arrays of proposals. This is what a job that runs the network over every image calls.

    generator = ProposalGenerator.from_checkpoint("runs/proposer/checkpoint.pt")
    arrays = generator([pixels_a, pixels_b])  # each (N_i, 5) float32: x0, y0, x1, y1, score

Checkpoints are read with `torch.load(weights_only=True)` (data, never code) and must be a proposal network's: the
network is rebuilt from the `proposer` section of the config saved inside it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from schemas.config import ConfigError, from_dict
from trainers.proposer.config import ProposalOutputConfig, ProposerConfig, ProposerNetworkConfig
from trainers.proposer.network import ProposalNetwork
from trainers.proposer.padding_groups import same_padding_groups

CHECKPOINT_KEY = "proposer.checkpoint"  # the config key that names the checkpoint a proposals job loads


class ProposerCheckpointError(ValueError):
    """A checkpoint that is missing or not a proposal network's; the message names the file and the config key."""


def _checkpoint_state(path: Path, config_key: str) -> tuple[ProposerConfig, dict]:
    if not path.is_file():
        raise ProposerCheckpointError(f"proposal network checkpoint not found: {path} (config key {config_key}); "
                                      "train one with python -m trainers.train --config configs/shapes/proposer.yaml (make proposals)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError / RuntimeError / ValueError variants here
        raise ProposerCheckpointError(f"{path} (config key {config_key}) is not a checkpoint that loads safely: "
                                      f"{error}") from error
    section = checkpoint.get("config", {}).get("proposer") if isinstance(checkpoint, dict) else None
    weights = checkpoint.get("detector") if isinstance(checkpoint, dict) else None
    if not isinstance(section, dict) or not isinstance(weights, dict):
        raise ProposerCheckpointError(f"{path} (config key {config_key}) is not a proposal network checkpoint "
                                      "(no 'proposer' config section or no weights in it)")
    average = checkpoint.get("detector_average")
    if isinstance(average, dict) and isinstance(average.get("weights"), dict):
        weights = average["weights"]  # the run kept a moving average of its weights: it is what gets evaluated
    try:
        return from_dict(ProposerConfig, section, "proposer."), weights
    except (ConfigError, ValueError) as error:
        raise ProposerCheckpointError(f"{path} (config key {config_key}): its proposer config does not load "
                                      f"({error})") from error


class ProposalGenerator:
    """A proposal network in eval mode on one device, with the top-k / NMS / threshold of `output`.
    `network_config`: what the network is (objectness, backbone), when known (a checkpoint's)."""

    def __init__(self, network: ProposalNetwork, output: ProposalOutputConfig, device: torch.device | str = "cpu",
                 network_config: ProposerNetworkConfig | None = None):
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.output = output
        self.network_config = network_config

    @classmethod
    def from_checkpoint(cls, path: str | Path, output: ProposalOutputConfig | None = None,
                        device: torch.device | str = "cpu", config_key: str = CHECKPOINT_KEY) -> "ProposalGenerator":
        """The network saved in `path`; `output` None keeps the output settings it was trained with. A missing,
        unsafe or foreign checkpoint is a ProposerCheckpointError naming `path` and `config_key`."""
        config, weights = _checkpoint_state(Path(path), config_key)
        network = ProposalNetwork.from_config(dataclasses.replace(config.network, backbone_weights=None))
        try:
            network.load_state_dict(weights)
        except RuntimeError as error:
            raise ProposerCheckpointError(f"{path} (config key {config_key}): its weights do not fit the network "
                                          f"its config describes ({str(error)[:300]})") from error
        return cls(network, output or config.output, device, config.network)

    @torch.inference_mode()
    def propose_tensors(self, images: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """images: (3, H_i, W_i) float in [0, 1] → per image (boxes (K_i, 4) xyxy pixels, scores (K_i,)), on CPU."""
        found = self.network.propose([image.to(self.device) for image in images], self.output)
        return [(boxes.float().cpu(), scores.float().cpu()) for boxes, scores in found]

    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """images: decoded RGB pixels, each (H_i, W_i, 3) uint8, of any sizes; all go through one forward.

        Returns one (K_i, 5) float32 array per image: x0, y0, x1, y1 in that image's pixels (clipped to it) and the
        score in [0, 1], sorted by score (highest first), K_i ≤ output.top_k after class-agnostic NMS at
        output.nms_thresh and the output.score_thresh cut. Images go through one forward per padded input size
        (trainers/proposer/padding_groups.py), so an image's proposals are the same whatever it is batched with."""
        tensors = []
        for position, pixels in enumerate(images):
            if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
                raise ValueError(f"image {position} of the batch must be (H, W, 3) uint8 RGB, got {pixels.shape} "
                                 f"{pixels.dtype}")
            tensors.append(torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255))
        found: list[np.ndarray] = [np.zeros((0, 5), np.float32)] * len(images)
        for group in same_padding_groups(images, self.network.transform):
            for position, (boxes, scores) in zip(group, self.propose_tensors([tensors[i] for i in group])):
                found[position] = torch.cat([boxes, scores[:, None]], dim=1).numpy().astype(np.float32, copy=False)
        return found
