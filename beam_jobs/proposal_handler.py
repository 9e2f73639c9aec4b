"""RunInference ModelHandler of the proposals job: decoded images in, each image's proposals out."""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from trainers.proposer.config import ProposalOutputConfig
from trainers.proposer.inference import ProposalGenerator
from vlm.clip import resolve_device

LOG = logging.getLogger(__name__)


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
        found = model(batch)  # one forward per padded size: an image's proposals do not depend on its batch
        seconds_each = (time.perf_counter() - started) / max(len(batch), 1)
        return [PredictionResult(None, (proposals, seconds_each)) for proposals in found]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(pixels.nbytes for pixels in batch)

    def get_metrics_namespace(self) -> str:
        return "proposals_network"
