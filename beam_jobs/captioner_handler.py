"""RunInference ModelHandler for our region captioners: images' pseudo boxes in, one caption per box out."""
from __future__ import annotations

import time
from typing import Any, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines.captioners import Captioner, ImageRegions, build_captioner
from pipelines.pseudo_labels_config import CaptionerSection


class CaptionerHandler(ModelHandler[ImageRegions, PredictionResult, Captioner]):
    """Batches of ImageRegions (whole images) → one PredictionResult per image with inference =
    (captions, one per region, or a CaptionFailure; seconds of model time attributed to this image).

    The captioner named in the config is built once per process through RunInference's shared handle (or once per
    machine with `large_model`), never per element or bundle. Batch sizes count images, not regions.
    """

    def __init__(self, config: CaptionerSection, *, min_batch_size: int = 4, max_batch_size: int = 32,
                 large_model: bool = False):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size, large_model=large_model)
        self._config = config

    def load_model(self) -> Captioner:
        return build_captioner(self._config)

    def run_inference(self, batch: Sequence[ImageRegions], model: Captioner,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        started = time.perf_counter()
        results = model.caption(list(batch))
        seconds_each = (time.perf_counter() - started) / max(len(batch), 1)
        return [PredictionResult(item, (result, seconds_each)) for item, result in zip(batch, results)]

    def get_num_bytes(self, batch: Sequence[ImageRegions]) -> int:
        return sum(item.embeddings.nbytes + item.boxes.nbytes for item in batch)

    def get_metrics_namespace(self) -> str:
        return "pseudo_labels_captioner"
