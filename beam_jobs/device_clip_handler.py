"""RunInference ModelHandler of extract-features' device path: whole images (bytes + crop windows) in, one embedding
per window out; decode, crop, resize and encode happen on the device (vlm.region_encoder)."""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from vlm.clip import ClipSource, load_clip
from vlm.clip_preprocess import CropPreprocess
from vlm.region_encoder import RegionEncoder, RegionRequest

LOG = logging.getLogger(__name__)
MODEL_READY = "image tower ready:"
# Crops per RunInference call, in forwards of runtime.max_batch_size: the encoder prepares the next forward's images
# on a host thread while the device runs this one, which needs more than one forward per call.
FORWARDS_PER_CALL = 4


def keyed_request_crops(element: tuple[Any, RegionRequest]) -> int:
    """The batching weight of a (key, RegionRequest): its crops. BatchElements runs before RunInference unwraps keys."""
    return len(element[1].windows)


class DeviceClipHandler(ModelHandler[RegionRequest, PredictionResult, RegionEncoder]):
    """Batches of RegionRequest (about FORWARDS_PER_CALL x `max_crops` crops) → one PredictionResult per image with
    inference = vlm.region_encoder.RegionResult (embeddings and raw norms, or the ImageReadError; step seconds).

    The model is loaded once per process through RunInference's shared handle (or once per machine with
    `large_model`). `resize`: "batched", "per_crop" or "auto" (batched on a GPU, per_crop on a CPU).
    """

    def __init__(self, source: ClipSource, preprocess: CropPreprocess, *, dtype: str = "fp32", device: str = "auto",
                 max_crops: int = 64, resize: str = "auto", large_model: bool = False):
        super().__init__(min_batch_size=max_crops, max_batch_size=FORWARDS_PER_CALL * max_crops,
                         element_size_fn=keyed_request_crops, large_model=large_model)
        self._source = source
        self._preprocess = preprocess
        self._dtype = dtype
        self._device = device
        self._max_crops = max_crops
        self._resize = resize

    def load_model(self) -> RegionEncoder:
        started = time.perf_counter()
        clip = load_clip(self._source, device=self._device, dtype=self._dtype)
        resize = self._resize if self._resize != "auto" else ("batched" if clip.device.type == "cuda" else "per_crop")
        # bench/gpu.py times the job from this line on (its timestamp) to the last commit.
        LOG.info("%s %s loaded on %s in %.2f s; crops resized %s", MODEL_READY, self._source.open_clip_name,
                 clip.device, time.perf_counter() - started, resize)
        return RegionEncoder(clip.model, self._preprocess, clip.device, clip.dtype, max_crops=self._max_crops,
                             resize=resize, dtype_choice=clip.dtype_choice)

    def run_inference(self, batch: Sequence[RegionRequest], model: RegionEncoder,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        return [PredictionResult(request, result) for request, result in zip(batch, model.encode(list(batch)))]

    def get_num_bytes(self, batch: Sequence[RegionRequest]) -> int:
        return sum(len(request.image.data) for request in batch)

    def get_metrics_namespace(self) -> str:
        return "extract_features_clip_device"
