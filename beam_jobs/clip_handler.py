"""RunInference ModelHandler for open_clip image towers: uint8 crops in, normalised embeddings out."""
from __future__ import annotations

import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from vlm.clip_preprocess import CropPreprocess, normalise_batch, stack_crops
from vlm.clip import ClipSource, LoadedClip, load_clip
from vlm.embeddings import unit_embeddings


class ClipImageHandler(ModelHandler[torch.Tensor, PredictionResult, LoadedClip]):
    """Batches of (3, S, S) uint8 crops → one PredictionResult per crop with inference =
    ((D,) float16 L2-normalised embedding, float length of the raw encode_image output, seconds of model time
    attributed to this crop, the dtype the model runs in and how it was picked: vlm.dtype_probe.DtypeChoice's
    record).

    The model is loaded once per process through RunInference's shared handle (or once per machine with
    `large_model`), never per element or bundle.
    """

    def __init__(self, source: ClipSource, preprocess: CropPreprocess, *, dtype: str = "fp32", device: str = "auto",
                 min_batch_size: int = 8, max_batch_size: int = 64, large_model: bool = False):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size, large_model=large_model)
        self._source = source
        self._preprocess = preprocess
        self._dtype = dtype
        self._device = device

    def load_model(self) -> LoadedClip:
        return load_clip(self._source, device=self._device, dtype=self._dtype)

    def run_inference(self, batch: Sequence[torch.Tensor], model: LoadedClip,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        started = time.perf_counter()
        pixels = stack_crops(batch).to(model.device, non_blocking=True)
        with torch.inference_mode():
            features = model.model.encode_image(normalise_batch(pixels, self._preprocess, model.dtype))
            embeddings, norms = unit_embeddings(features)
        # Copying to host is the sync point on a GPU, so the time below includes the forward pass.
        rows = embeddings.cpu().numpy().astype(np.float16)
        lengths = norms.cpu().numpy()
        seconds_each = (time.perf_counter() - started) / max(len(rows), 1)
        dtype = model.dtype_choice.as_record() if model.dtype_choice is not None else None
        return [PredictionResult(None, (row, float(length), seconds_each, dtype)) for row, length in zip(rows, lengths)]

    def get_num_bytes(self, batch: Sequence[torch.Tensor]) -> int:
        return sum(t.numel() * t.element_size() for t in batch)

    def get_metrics_namespace(self) -> str:
        return "extract_features_clip"
