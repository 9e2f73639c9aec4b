"""RunInference ModelHandler of the proposals job: decoded images in, each image's proposals out."""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from trainers.proposer.config import ProposalOutputConfig
from trainers.proposer.inference import ProposalGenerator
from vlm.clip import resolve_device

LOG = logging.getLogger(__name__)


def padded_input_size(transform: GeneralizedRCNNTransform, height: int, width: int) -> tuple[int, int]:
    """The size the network's input transform gives an image of `height` x `width` in eval mode, padding included,
    when the image is alone in its forward: torchvision/models/detection/transform.py, _resize_image_and_masks
    (scale = min(min_size / shorter side, max_size / longer side), each side floor(side x scale), as
    F.interpolate with recompute_scale_factor computes it) then batch_images (each side up to a multiple of
    size_divisible)."""
    if transform.fixed_size is not None:
        resized = (transform.fixed_size[1], transform.fixed_size[0])
    else:
        scale = min(transform.min_size[-1] / min(height, width), transform.max_size / max(height, width))
        resized = (math.floor(height * scale), math.floor(width * scale))
    stride = transform.size_divisible
    return tuple(int(math.ceil(side / stride) * stride) for side in resized)


def same_padding_groups(images: Sequence[np.ndarray], transform: GeneralizedRCNNTransform) -> list[list[int]]:
    """Positions of `images` grouped by the size the network pads each to alone, groups in order of first appearance.

    The network pads the images of one forward to the largest of them, and features near an image's border see that
    padding, so an image's proposals would depend on which images Beam batched it with. In a forward of images that
    each pad to the same size alone, every image is padded as it would be alone: its proposals are its own."""
    groups: dict[tuple[int, int], list[int]] = {}
    for position, pixels in enumerate(images):
        groups.setdefault(padded_input_size(transform, *pixels.shape[:2]), []).append(position)
    return list(groups.values())


class ProposalNetworkHandler(ModelHandler[np.ndarray, PredictionResult, ProposalGenerator]):
    """Batches of decoded images ((H, W, 3) uint8 RGB, any sizes) → one PredictionResult per image with inference =
    ((K, 5) float32 x0, y0, x1, y1, score best first, K ≤ output.top_k; seconds of model time attributed to it).

    The network is loaded once per process through RunInference's shared handle (or once per machine with
    `large_model`), never per element or bundle. Batch sizes count images."""

    def __init__(self, checkpoint: str, output: ProposalOutputConfig, *, device: str = "auto",
                 min_batch_size: int = 8, max_batch_size: int = 64, large_model: bool = False,
                 config_key: str = "proposer.checkpoint"):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size, large_model=large_model)
        self._checkpoint = checkpoint
        self._output = output
        self._device = device
        self._config_key = config_key

    def load_model(self) -> ProposalGenerator:
        started = time.perf_counter()
        generator = ProposalGenerator.from_checkpoint(self._checkpoint, self._output, resolve_device(self._device),
                                                      config_key=self._config_key)
        LOG.info("proposal network %s loaded on %s in %.2f s", self._checkpoint, generator.device,
                 time.perf_counter() - started)
        return generator

    def run_inference(self, batch: Sequence[np.ndarray], model: ProposalGenerator,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        started = time.perf_counter()
        found: list[np.ndarray | None] = [None] * len(batch)
        for group in same_padding_groups(batch, model.network.transform):
            for position, proposals in zip(group, model([batch[i] for i in group])):
                found[position] = proposals
        seconds_each = (time.perf_counter() - started) / max(len(batch), 1)
        return [PredictionResult(None, (proposals, seconds_each)) for proposals in found]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(pixels.nbytes for pixels in batch)

    def get_metrics_namespace(self) -> str:
        return "proposals_network"
