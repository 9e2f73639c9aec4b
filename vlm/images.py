"""Image files: where they are (inside the image root, never outside it) and decoding each once into RGB pixels,
its size and the sha256 of its bytes, or a clear reason why not."""
from __future__ import annotations

import hashlib
import io
import os
import posixpath
from dataclasses import dataclass
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

OpenFn = Callable[[str], BinaryIO]  # opens a path for binary reading (local files, or Beam's FileSystems.open)


def open_local(path: str) -> BinaryIO:
    return open(path, "rb")


class ImageReadError(Exception):
    """An image that cannot be used; `kind` is the dead-letter kind (missing, truncated, not_an_image, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (H, W, 3) uint8 RGB
    sha256: str  # of the file bytes

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def read_bytes(path: str, open_fn: OpenFn = open_local) -> bytes:
    try:
        with open_fn(path) as handle:
            return handle.read()
    except FileNotFoundError as error:
        raise ImageReadError("missing", f"image file not found: {path}") from error
    except OSError as error:
        raise ImageReadError("unreadable", f"cannot read image file {path}: {error}") from error


def decode_image(data: bytes, path: str) -> DecodedImage:
    """File bytes → RGB pixels. EXIF orientation is not applied: COCO boxes refer to the stored pixels."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now, so truncation is detected here and not on first pixel access
            pixels = np.array(image.convert("RGB"))  # writable, so crops can become tensors without a warning
    except UnidentifiedImageError as error:
        raise ImageReadError("not_an_image", f"{path} is not an image PIL can read ({len(data)} bytes)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError("truncated", f"{path} is truncated or corrupt: {error}") from error
    return DecodedImage(pixels, digest)


def size_mismatch(path: str, decoded: tuple[int, int], annotated: tuple[int, int]) -> ImageReadError:
    """The dead letter of an image whose pixels are not the size its annotations give ((width, height) each)."""
    return ImageReadError("size_mismatch", f"{path} decodes to {decoded[0]}x{decoded[1]} but the annotations say "
                                           f"{annotated[0]}x{annotated[1]}; its boxes would not fit the pixels")


def load_image(path: str, open_fn: OpenFn = open_local) -> DecodedImage:
    return decode_image(read_bytes(path, open_fn), path)


class PathEscapeError(ValueError):
    """An image file name that would resolve outside the image root."""


def resolve_image_path(root: str, file_name: str) -> str:
    """`root`/`file_name`, refusing names that are absolute or climb out of the root.

    Works for local roots and URL-like roots (`gs://bucket/images`); for local roots symlinks are resolved
    too, so a link pointing outside the root is refused as well.
    """
    name = file_name.replace("\\", "/")
    normal = posixpath.normpath(name)
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../") or ":" in normal.split("/")[0]:
        raise PathEscapeError(f"image file name {file_name!r} escapes the image root {root!r}")
    joined = root.rstrip("/") + "/" + normal
    if "://" not in root:
        real_root = os.path.realpath(root)
        real = os.path.realpath(joined)
        if os.path.commonpath([real_root, real]) != real_root:
            raise PathEscapeError(f"image file name {file_name!r} resolves to {real}, outside the image root {root!r}")
    return joined
