"""Image files of every kind the device path must route: baseline, grey, progressive, CMYK JPEGs, truncated and
non-JPEG files; written by PIL in memory."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 like a photo: smooth gradients and shading, a few flat objects with sharp edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    phase = rng.uniform(0, 2 * np.pi, 3)
    pixels = np.stack([127 + 100 * np.sin(6 * xx + phase[0]) * np.cos(4 * yy),
                       127 + 100 * np.sin(5 * yy + phase[1]),
                       127 + 100 * np.cos(7 * (xx + yy) + phase[2])], -1)
    for _ in range(4):
        y0, x0 = int(rng.integers(0, height - 1)), int(rng.integers(0, width - 1))
        pixels[y0:y0 + height // 4, x0:x0 + width // 4] = rng.integers(0, 255, 3)
    return pixels.clip(0, 255).astype(np.uint8)


def encoded(pixels: np.ndarray, fmt: str = "JPEG", mode: str = "RGB", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt, **options)
    return buffer.getvalue()


def files(height: int = 48, width: int = 64) -> dict[str, bytes]:
    """name → bytes; `baseline*` and `grey` are the ones the device decoder gets."""
    pixels = photo(height, width)
    baseline = encoded(pixels, quality=92)
    return {
        "baseline": baseline,
        "baseline_trailing_zeros": baseline + b"\x00" * 16,
        "grey": encoded(pixels, mode="L", quality=92),
        "progressive": encoded(pixels, quality=92, progressive=True),
        "cmyk": encoded(pixels, mode="CMYK", quality=92),
        "truncated": baseline[:-64],  # the last scan bytes and the end-of-image marker missing
        "png": encoded(pixels, "PNG"),
        "text": b"this is not an image",
    }
