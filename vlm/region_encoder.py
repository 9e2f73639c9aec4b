"""Whole images in, one embedding per crop window out, with the pixels on the device from decode to embedding.

Per call: images are taken in chunks of at most `max_crops` crops. A host thread prepares the images ahead (reads
PIL's share of decoding, see vlm.device_decode) while the device works on the chunk before; per chunk the device
decodes every JPEG in one call, cuts and resizes every crop (vlm.crop_resample), normalises and encodes them in
`dtype`. Results stay on the device until the call ends, so the only host-device sync is one copy at the end (and
what torchvision's JPEG decoder does itself). An out-of-memory error halves `max_crops` and redoes the chunk.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vlm.clip_preprocess import CropPreprocess, normalise_batch
from vlm.crop_resample import CropWindows, resample_batched, resize_per_crop
from vlm.device_decode import EncodedImage, HostImage, decode_on_device, prepare_on_host
from vlm.dtype_probe import DtypeChoice
from vlm.embeddings import unit_embeddings
from vlm.images import ImageReadError, size_mismatch
from vlm.oom_backoff import BatchBackoff, is_out_of_memory

Resize = Literal["per_crop", "batched"]


@dataclass(frozen=True)
class RegionRequest:
    """One image and the windows to embed from it."""

    image: EncodedImage  # bytes, and the path decode errors name
    file_name: str  # the name a size_mismatch names
    size: tuple[int, int]  # (width, height) its annotations give; other pixels are a size_mismatch
    windows: np.ndarray  # (R, 4) int64 crop windows xyxy inside that size (pipelines.crops.crop_window)


@dataclass(frozen=True)
class RegionResult:
    """Per request: the embeddings of its windows, or why there are none; and its share of each step's time."""

    embeddings: np.ndarray | None  # (R, D) float16, unit length
    norms: np.ndarray | None  # (R,) float32 lengths of the raw encode_image output
    error: ImageReadError | None
    decode_seconds: float = 0.0
    crop_seconds: float = 0.0
    model_seconds: float = 0.0
    model_dtype: dict | None = None  # the encoder's vlm.dtype_probe.DtypeChoice record


class _Clock:
    """Elapsed time between marks: CUDA events on a GPU (read once, after the call's single sync), else wall time."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> int:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())
        return len(self.marks) - 1

    def seconds(self, start: int, stop: int) -> float:
        if self.cuda:
            return self.marks[start].elapsed_time(self.marks[stop]) / 1000.0
        return self.marks[stop] - self.marks[start]


@dataclass
class _Chunk:
    """What one chunk left on the device, and the marks of its steps."""

    requests: list[int]  # indices into the call's requests
    errors: dict[int, ImageReadError]
    owners: list[int]  # per crop: its request index
    unit: list[torch.Tensor]  # (k, D) float32 per forward
    norms: list[torch.Tensor]  # (k,) float32 per forward
    decode: tuple[int, int] = (0, 0)
    crops: tuple[tuple[int, int], ...] = ()
    model: tuple[tuple[int, int], ...] = ()


class RegionEncoder:
    """An open_clip image tower with open_clip's preprocessing, on whole images and their crop windows.

    model: the CLIP (eval mode, on `device`, in `dtype`); resize: "batched" (two matmuls for every crop of a chunk:
    vlm.crop_resample, for GPUs) or "per_crop" (torchvision's resize per crop, for CPUs).
    """

    def __init__(self, model: torch.nn.Module, preprocess: CropPreprocess, device: torch.device, dtype: torch.dtype,
                 *, max_crops: int, resize: Resize, prefetch: bool = True, dtype_choice: DtypeChoice | None = None):
        self.model = model
        self.dtype_record = dtype_choice.as_record() if dtype_choice is not None else None
        self.preprocess = preprocess
        self.device = device
        self.dtype = dtype
        self.resize = resize
        self.backoff = BatchBackoff(max_crops, "crops per forward (runtime.max_batch_size)")
        # One host thread, so images are prepared in order, each once, ahead of the device.
        self._host = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-decode") if prefetch else None
        # fp16 resampling on a GPU: its tensor cores; float32 on a CPU (no fast fp16 matmul there).
        self._resample_dtype = torch.float16 if device.type == "cuda" else torch.float32

    def encode(self, requests: list[RegionRequest]) -> list[RegionResult]:
        pin = self.device.type == "cuda"
        if self._host is not None:
            futures = [self._host.submit(prepare_on_host, r.image, pin) for r in requests]
            host = lambda i: futures[i].result()  # noqa: E731
        else:
            host = lambda i: prepare_on_host(requests[i].image, pin)  # noqa: E731
        clock = _Clock(self.device)
        chunks, position = [], 0
        with torch.inference_mode():
            while position < len(requests):
                indices = self._next_chunk(requests, position)
                try:
                    chunks.append(self._run_chunk(requests, indices, [host(i) for i in indices], clock))
                except (torch.OutOfMemoryError, RuntimeError) as error:
                    if not is_out_of_memory(error):
                        raise
                    self.backoff.halve(error)
                    continue
                position += len(indices)
        return self._results(requests, chunks, [host(i).seconds for i in range(len(requests))], clock)

    def _next_chunk(self, requests: list[RegionRequest], start: int) -> list[int]:
        """Consecutive requests from `start` with at most `backoff.size` crops (at least one request)."""
        indices, crops = [start], len(requests[start].windows)
        for index in range(start + 1, len(requests)):
            crops += len(requests[index].windows)
            if crops > self.backoff.size:
                break
            indices.append(index)
        return indices

    def _run_chunk(self, requests: list[RegionRequest], indices: list[int], prepared: list[HostImage],
                   clock: _Clock) -> _Chunk:
        start = clock.mark()
        decoded = decode_on_device([requests[i].image for i in indices], prepared, self.device)
        decode = (start, clock.mark())
        errors, images, index_of, windows, owners = {}, [], [], [], []
        for request_index, pixels in zip(indices, decoded):
            request = requests[request_index]
            if isinstance(pixels, ImageReadError):
                errors[request_index] = pixels
                continue
            height, width = int(pixels.shape[1]), int(pixels.shape[2])
            if (width, height) != request.size:
                errors[request_index] = size_mismatch(request.file_name, (width, height), request.size)
                continue
            index_of += [len(images)] * len(request.windows)
            windows.append(np.asarray(request.windows, dtype=np.int64).reshape(-1, 4))
            owners += [request_index] * len(request.windows)
            images.append(pixels)
        chunk = _Chunk(indices, errors, owners, [], [], decode)
        if not owners:
            return chunk
        crops = CropWindows(np.asarray(index_of, dtype=np.int64), np.concatenate(windows))
        spans_crop, spans_model = [], []
        for first in range(0, len(crops), self.backoff.size):  # one forward unless an image has more crops
            part = slice(first, first + self.backoff.size)
            sub = CropWindows(crops.image_index[part], crops.windows[part])
            begin = clock.mark()
            pixels = (resample_batched(images, sub, self.preprocess, self._resample_dtype) if self.resize == "batched"
                      else resize_per_crop(images, sub, self.preprocess).to(self.device))
            cut = clock.mark()
            features = self.model.encode_image(normalise_batch(pixels, self.preprocess, self.dtype))
            unit, norms = unit_embeddings(features)
            chunk.unit.append(unit)
            chunk.norms.append(norms)
            spans_crop.append((begin, cut))
            spans_model.append((cut, clock.mark()))
        chunk.crops, chunk.model = tuple(spans_crop), tuple(spans_model)
        return chunk

    def _results(self, requests: list[RegionRequest], chunks: list[_Chunk], host_seconds: list[float],
                 clock: _Clock) -> list[RegionResult]:
        """One copy to the host for the whole call (the sync point), then each request's rows and time shares."""
        unit = [t for chunk in chunks for t in chunk.unit]
        norms = [t for chunk in chunks for t in chunk.norms]
        rows = torch.cat(unit).cpu().numpy().astype(np.float16) if unit else np.zeros((0, 0), np.float16)
        lengths = torch.cat(norms).cpu().numpy() if norms else np.zeros(0, np.float32)
        if clock.cuda:
            torch.cuda.synchronize(self.device)
        results: list[RegionResult | None] = [None] * len(requests)
        offset = 0
        for chunk in chunks:
            crop_total = sum(clock.seconds(*span) for span in chunk.crops)
            model_total = sum(clock.seconds(*span) for span in chunk.model)
            decode_each = clock.seconds(*chunk.decode) / len(chunk.requests)
            owners = np.asarray(chunk.owners, dtype=np.int64)
            for index in chunk.requests:
                host = host_seconds[index] + decode_each
                if index in chunk.errors:
                    results[index] = RegionResult(None, None, chunk.errors[index], host)
                    continue
                mine = np.flatnonzero(owners == index) + offset
                share = len(mine) / max(len(owners), 1)
                results[index] = RegionResult(rows[mine], lengths[mine], None, host, crop_total * share,
                                              model_total * share, self.dtype_record)
            offset += len(chunk.owners)
        return results
