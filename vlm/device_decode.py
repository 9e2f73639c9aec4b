"""Image bytes → (3, H, W) uint8 pixels on the device: JPEGs by torchvision's decoder in one batched call (nvJPEG on a
GPU), everything else and everything it refuses by PIL on the host, with today's dead-letter kinds.

Two steps, so the host's share can run ahead on a thread while the device works:
- `prepare_on_host` (one image, host only): the header's size is checked first (vlm.images.SizeCheck: the annotation's
  size, the pixel limit), so a decompression bomb is refused before any pixel exists on either side. A JPEG the
  device decoder gets (vlm.jpeg_header: plain complete baseline files; its SOF gives the size) becomes a byte tensor;
  anything else is decoded by PIL (vlm.images.decode_image) here: PNG and other formats, progressive, CMYK,
  truncated or corrupt files. A bad file fails exactly as on the host path (`truncated`, `too_large`, ...).
- `decode_on_device` (a batch): the JPEGs in one decoder call, the PIL pixels copied over. The batched call returns
  nothing when one file fails, so then each is retried alone, and a file the device decoder still refuses goes to PIL.
On the CPU torchvision's decoder is libjpeg-turbo like PIL's and gives the same pixels (tests/vlm/test_device_decode.py),
about 3x faster than PIL's decode and RGB conversion (1.96 against 6.03 ms for a 640x480 JPEG on our 2-core machine).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from vlm.images import ImageReadError, SizeCheck, decode_image
from vlm.jpeg_header import read_jpeg_header

# torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec, which is not among our requirements;
# decode_jpeg is still the batched nvJPEG entry point.
warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io.image")


@dataclass(frozen=True)
class EncodedImage:
    data: bytes  # the file's bytes
    path: str  # for messages
    check: SizeCheck = SizeCheck()  # what its header must say before it is decoded


@dataclass(frozen=True)
class HostImage:
    """One image after the host's share: exactly one of `jpeg`, `pixels`, `error` is set."""

    jpeg: torch.Tensor | None = None  # (N,) uint8 file bytes, for the device's decoder
    pixels: torch.Tensor | None = None  # (3, H, W) uint8, decoded by PIL
    error: ImageReadError | None = None
    seconds: float = 0.0  # host time spent on it


def decode_with_pil(image: EncodedImage) -> torch.Tensor:
    """(3, H, W) uint8 CPU tensor; raises ImageReadError (truncated, not_an_image, too_large, ...)."""
    return torch.from_numpy(decode_image(image.data, image.path, image.check).pixels).permute(2, 0, 1)


def prepare_on_host(image: EncodedImage, pin: bool = False) -> HostImage:
    """The host's share of decoding one image; `pin`: page-locked pixels, so their copy to a GPU is asynchronous."""
    started = time.perf_counter()
    header = read_jpeg_header(image.data)
    if header is not None and header.device_decodable:
        # torchvision's decoder allocates what the SOF claims, with no limit of its own: check it first.
        refusal = image.check.refusal(image.path, (header.width, header.height))
        if refusal is not None:
            return HostImage(error=refusal, seconds=time.perf_counter() - started)
        return HostImage(jpeg=torch.frombuffer(bytearray(image.data), dtype=torch.uint8),
                         seconds=time.perf_counter() - started)
    try:
        pixels = decode_with_pil(image)
    except ImageReadError as error:
        return HostImage(error=error, seconds=time.perf_counter() - started)
    return HostImage(pixels=pixels.contiguous().pin_memory() if pin else pixels, seconds=time.perf_counter() - started)


def decode_on_device(images: list[EncodedImage], prepared: list[HostImage], device: torch.device
                     ) -> list[torch.Tensor | ImageReadError]:
    """Every image as (3, H, W) uint8 on `device`, or the ImageReadError it gives."""
    out: list[torch.Tensor | ImageReadError | None] = [None] * len(images)
    for index, host in enumerate(prepared):
        if host.error is not None:
            out[index] = host.error
        elif host.pixels is not None:
            out[index] = host.pixels.to(device, non_blocking=True)
    jpegs = [index for index, host in enumerate(prepared) if host.jpeg is not None]
    if jpegs:
        try:
            decoded = decode_jpeg([prepared[i].jpeg for i in jpegs], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            decoded = [_decode_alone(images[i], prepared[i].jpeg, device) for i in jpegs]
        for index, pixels in zip(jpegs, decoded):
            out[index] = pixels
    return out


def _decode_alone(image: EncodedImage, data: torch.Tensor, device: torch.device) -> torch.Tensor | ImageReadError:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        try:
            return decode_with_pil(image).to(device)
        except ImageReadError as error:
            return error
