"""Every crop of a batch of images cut and resized to the model's input at once: two batched matmuls on the device.

open_clip's inference transform resizes each crop with PIL's antialiased filter (bicubic for every released CLIP),
then centre-crops or pads (`clip_preprocess.resize_geometry`). Resizing is separable, so one crop's input is
`A_y · image · A_xᵀ` per channel, where row j of `A_x` holds PIL's filter taps for output column j over the crop's
window of the image. The taps are computed here as PIL's `precompute_coeffs` computes them (support scaled by the
downscale factor, weights normalised per output sample), for all crops at once, and scattered into dense matrices
over the padded image extent, so crops of any window size and any image of the batch share two matmuls:
    X = images · A_xᵀ         grouped by image: (B, 3·Hp, Wp) @ (B, Wp, Kmax·S)
    crops = A_y · X[crop]     batched over crops: (K, 1, S, Hp) @ (K, 3, Hp, S)
`torchvision.ops.roi_align` would be one call too, but it averages bilinear samples per output bin (an area
filter), not open_clip's bicubic. The dense matrices cost ~0.6 GFLOP per 640x480 crop, nothing on a GPU's tensor
cores in fp16; on a CPU the same product is ~40x slower than torchvision's sparse antialiased resize per crop
(47 ms against 1.25 ms per crop, one thread, this project's 2-core machine), which is why the device path resizes
per crop there (`resize_per_crop`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vlm.clip_preprocess import CropPreprocess, ResizeGeometry, resize_crop, resize_geometry


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    """PIL's bicubic kernel (Resample.c), a = -0.5; support 2."""
    a = -0.5
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def _triangle(x: torch.Tensor) -> torch.Tensor:
    """PIL's bilinear kernel; support 1."""
    return (1.0 - x.abs()).clamp_min(0.0)


# interpolation → (kernel, support at scale 1); "nearest" has no kernel (PIL samples floor((u + 0.5) * scale)).
KERNELS = {"bicubic": (_bicubic, 2.0), "bilinear": (_triangle, 1.0)}


@dataclass(frozen=True)
class CropWindows:
    """K crops of a batch of images: which image, and the integer window xyxy cut from it (pipelines.crops)."""

    image_index: np.ndarray  # (K,) int64, into the batch's images
    windows: np.ndarray  # (K, 4) int64 xyxy pixels, [x0, x1) x [y0, y1)

    def __len__(self) -> int:
        return len(self.image_index)


def axis_weights(starts: np.ndarray, lengths: np.ndarray, resized: np.ndarray, offsets: np.ndarray, out_size: int,
                 extent: int, interpolation: str, device: torch.device) -> torch.Tensor:
    """Resampling matrices along one axis, one per crop.

    starts, lengths: (K,) the crop window along this axis in image pixels; resized: (K,) its resized length;
    offsets: (K,) resized index of output sample 0 (negative: padding); extent: the padded image length.
    Returns (K, out_size, extent) float32: output sample j of crop k = Σ_x W[k, j, x] · image[x]. Rows of padding
    samples are zero.
    """
    k = len(starts)
    as_tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)  # noqa: E731
    start, length, size, offset = (as_tensor(a) for a in (starts, lengths, resized, offsets))
    u = offset[:, None] + torch.arange(out_size, device=device, dtype=torch.float64)[None, :]  # (K, S)
    valid = (u >= 0) & (u < size[:, None])
    scale = length / size  # (K,) input pixels per output pixel
    center = (u + 0.5) * scale[:, None]  # PIL: center = (xx + 0.5) * scale, in window coordinates
    weights = torch.zeros(k, out_size, extent, dtype=torch.float32, device=device)
    if interpolation == "nearest":
        source = torch.minimum(center.floor(), (length - 1)[:, None])
        columns = (start[:, None] + source).long().clamp(0, extent - 1)
        weights.scatter_(2, columns[..., None], valid[..., None].float())
        return weights
    kernel, base_support = KERNELS[interpolation]
    filter_scale = scale.clamp_min(1.0)[:, None]  # antialiasing: the kernel widens by the downscale factor
    support = base_support * filter_scale
    low = (center - support + 0.5).floor().clamp_min(0.0)  # PIL: xmin = (int)(center - support + 0.5), >= 0
    high = torch.minimum((center + support + 0.5).floor(), length[:, None])  # xmax, <= window length
    taps = int(math.ceil(2 * base_support * max(float(np.max(lengths / resized)), 1.0))) + 2
    x = low[..., None] + torch.arange(taps, device=device, dtype=torch.float64)  # (K, S, T) window coordinates
    inside = x < high[..., None]
    w = kernel((x - center[..., None] + 0.5) / filter_scale[..., None]) * inside
    total = w.sum(-1, keepdim=True)
    w = torch.where(total != 0, w / total, w) * valid[..., None]
    columns = (start[:, None, None] + x).long().clamp(0, extent - 1)
    weights.scatter_add_(2, columns, w.float())
    return weights


def geometries(windows: np.ndarray, pre: CropPreprocess) -> list[ResizeGeometry]:
    return [resize_geometry(int(y1 - y0), int(x1 - x0), pre) for x0, y0, x1, y1 in windows.tolist()]


def resample_batched(images: list[torch.Tensor], crops: CropWindows, pre: CropPreprocess,
                     dtype: torch.dtype) -> torch.Tensor:
    """images: B tensors (3, H_b, W_b) uint8 on one device; crops: K windows of them →
    (K, 3, H, W) `dtype` pixel values in [0, 255] (rounded, like PIL's uint8 output), open_clip's geometry.

    dtype: float32, or float16 on a GPU (pixels 0-255 are exact in it; the taps' rounding stays under 0.25 of a
    grey level, fp32 accumulation in the tensor cores).
    """
    device = images[0].device
    height, width = pre.size
    batch, count = len(images), len(crops)
    pad_h, pad_w = max(int(i.shape[1]) for i in images), max(int(i.shape[2]) for i in images)
    padded = torch.zeros(batch, 3, pad_h, pad_w, dtype=dtype, device=device)
    for b, image in enumerate(images):
        padded[b, :, :image.shape[1], :image.shape[2]] = image
    shapes = geometries(crops.windows, pre)
    x0, y0, x1, y1 = crops.windows.T
    rows = axis_weights(y0, y1 - y0, np.array([g.height for g in shapes]), np.array([g.top for g in shapes]),
                        height, pad_h, pre.interpolation, device).to(dtype)
    cols = axis_weights(x0, x1 - x0, np.array([g.width for g in shapes]), np.array([g.left for g in shapes]),
                        width, pad_w, pre.interpolation, device).to(dtype)
    # Group the crops by image: slot = the crop's position among its image's crops.
    image_index = torch.as_tensor(crops.image_index, device=device)
    order = np.argsort(crops.image_index, kind="stable")
    slot_np = np.empty(count, dtype=np.int64)
    per_image = np.bincount(crops.image_index, minlength=batch)
    slot_np[order] = np.concatenate([np.arange(n) for n in per_image]) if count else np.zeros(0, np.int64)
    slot = torch.as_tensor(slot_np, device=device)
    slots = max(int(per_image.max()), 1)
    grouped = torch.zeros(batch, slots, width, pad_w, dtype=dtype, device=device)
    grouped[image_index, slot] = cols
    across = padded.view(batch, 3 * pad_h, pad_w) @ grouped.view(batch, slots * width, pad_w).transpose(1, 2)
    across = across.view(batch, 3, pad_h, slots, width)[image_index, :, :, slot]  # (K, 3, Hp, W)
    out = rows[:, None] @ across  # (K, 3, H, W)
    if pre.fill_color:
        inside_rows = rows.sum(-1) > 0  # (K, H): output rows that come from the crop, not padding
        inside_cols = cols.sum(-1) > 0
        inside = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]
        out = torch.where(inside, out, torch.full_like(out, float(pre.fill_color)))
    return out.clamp_(0, 255).round_()


def resize_per_crop(images: list[torch.Tensor], crops: CropWindows, pre: CropPreprocess) -> torch.Tensor:
    """The same crops, one torchvision antialiased resize each: the host path's `resize_crop` on the same windows,
    (K, 3, H, W) uint8. Fastest on a CPU, whose resize kernel visits only the filter taps."""
    pixels = [_channels_last(image) for image in images]
    resized = (resize_crop(_window(pixels[b], x0, y0, x1, y1), pre)
               for b, (x0, y0, x1, y1) in zip(crops.image_index.tolist(), crops.windows.tolist()))
    if images and images[0].device.type != "cpu":
        return torch.stack(list(resized)) if len(crops) else torch.zeros(0, 3, *pre.size, dtype=torch.uint8)
    # Gathered channels-last by numpy, returned as a (K, 3, H, W) view of that memory: torch.stack's transposing
    # copy into channels-first took 12 ms a crop on our 2 busy cores, ten times the resize.
    batch = np.empty((len(crops), *pre.size, 3), dtype=np.uint8)
    for k, crop in enumerate(resized):
        batch[k] = crop.permute(1, 2, 0).numpy()
    return torch.from_numpy(batch).permute(0, 3, 1, 2)


def _channels_last(image: torch.Tensor) -> np.ndarray | torch.Tensor:
    """(3, H, W) → (H, W, 3) pixels; on the CPU a numpy view (torchvision's decoder and PIL both give channels-last
    memory, so no copy), so that each crop's window is copied by numpy as on the host path: torch's multi-threaded
    copy of a strided uint8 window ran 20x slower on our 2 busy cores (6 ms against 0.3 ms a crop)."""
    hwc = image.permute(1, 2, 0)
    return hwc.numpy() if image.device.type == "cpu" else hwc


def _window(pixels: np.ndarray | torch.Tensor, x0: int, y0: int, x1: int, y1: int) -> np.ndarray | torch.Tensor:
    """The (h, w, 3) window as `resize_crop` takes it: a numpy array, or a (3, h, w) tensor."""
    window = pixels[y0:y1, x0:x1]
    return window if isinstance(window, np.ndarray) else window.permute(2, 0, 1)
