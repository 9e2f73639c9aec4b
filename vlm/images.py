"""Image files: where they are (inside the image root, never outside it) and decoding each once into RGB pixels,
its size and the sha256 of its bytes, or a clear reason why not.

Every way one file can fail is an ImageReadError with a dead-letter kind, never another exception, so one hostile
file costs one failure row and never the job: a name that is no path (`bad_path`: a NUL byte, a name too long), a
name outside the root (`path_escape`), a missing or unreadable file, a file that is no image, a header whose size
is not the annotation's (`size_mismatch`) or above the pixel limit (`too_large`), a decoder error (`truncated`,
`corrupt`). The size is read from the header (PIL's lazy `Image.open`: the JPEG SOF, the PNG IHDR) and checked
before any pixel is decoded, so a decompression bomb (a small file whose header claims 40000x40000) costs no memory.
"""
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

# PIL's own decompression-bomb threshold (PIL/Image.py: MAX_IMAGE_PIXELS = int(1024 * 1024 * 1024 // 4 // 3), about
# 89.5 million pixels, 0.25 GiB as RGB): the default limit. PIL itself warns above it and refuses above twice it,
# which is the highest limit a config may set (runtime.max_image_pixels).
PIL_MAX_IMAGE_PIXELS = 89_478_485
DEFAULT_MAX_IMAGE_PIXELS = PIL_MAX_IMAGE_PIXELS
HIGHEST_MAX_IMAGE_PIXELS = 2 * PIL_MAX_IMAGE_PIXELS


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
    except ValueError as error:  # a path no filesystem takes (embedded NUL, unknown scheme)
        raise ImageReadError("bad_path", f"cannot open image file {path!r}: {error}") from error


@dataclass(frozen=True)
class SizeCheck:
    """What an image's header must say before its pixels are decoded."""

    expected: tuple[int, int] | None = None  # (width, height) its annotations give; None: any
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # runtime.max_image_pixels
    name: str | None = None  # the annotation's file name, which a size_mismatch names (default: the path)

    def refusal(self, path: str, size: tuple[int, int]) -> ImageReadError | None:
        """The dead letter of an image whose header says `size` ((width, height)), or None when it may be decoded."""
        width, height = size
        if width * height > self.max_pixels:
            return ImageReadError("too_large", f"{path} is {width}x{height} ({width * height} pixels), above the "
                                               f"limit of {self.max_pixels} (runtime.max_image_pixels); not decoded")
        if self.expected is not None and (width, height) != tuple(self.expected):
            return size_mismatch(self.name or path, (width, height), tuple(self.expected))
        return None


def header_size(data: bytes, path: str) -> tuple[int, int]:
    """(width, height) from the file's header, no pixel decoded; ImageReadError when there is no image header."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError as error:  # PIL's backstop: above twice its limit
        raise ImageReadError("too_large", f"{path}: {error}; not decoded") from error
    except UnidentifiedImageError as error:
        raise ImageReadError("not_an_image", f"{path} is not an image PIL can read ({len(data)} bytes)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError("truncated", f"{path} is truncated or corrupt: {error}") from error
    except Exception as error:  # PIL's format plugins raise many kinds on hostile headers (struct.error, ...)
        raise ImageReadError("corrupt", f"{path} has a header PIL cannot read ({type(error).__name__}: {error})"
                             ) from error


def decode_image(data: bytes, path: str, check: SizeCheck = SizeCheck()) -> DecodedImage:
    """File bytes → RGB pixels, after the header's size passed `check`. EXIF orientation is not applied: COCO boxes
    refer to the stored pixels."""
    refusal = check.refusal(path, header_size(data, path))
    if refusal is not None:
        raise refusal
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now, so truncation is detected here and not on first pixel access
            pixels = np.array(image.convert("RGB"))  # writable, so crops can become tensors without a warning
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError("truncated", f"{path} is truncated or corrupt: {error}") from error
    except Exception as error:  # a decoder's other errors on hostile data (struct.error, IndexError, MemoryError, ...)
        raise ImageReadError("corrupt", f"{path} cannot be decoded ({type(error).__name__}: {error})") from error
    return DecodedImage(pixels, digest)


def size_mismatch(path: str, decoded: tuple[int, int], annotated: tuple[int, int]) -> ImageReadError:
    """The dead letter of an image whose header or pixels are not the size its annotations give ((width, height))."""
    return ImageReadError("size_mismatch", f"{path} is {decoded[0]}x{decoded[1]} but the annotations say "
                                           f"{annotated[0]}x{annotated[1]}; its boxes would not fit the pixels")


def load_image(path: str, open_fn: OpenFn = open_local, check: SizeCheck = SizeCheck()) -> DecodedImage:
    return decode_image(read_bytes(path, open_fn), path, check)


class PathEscapeError(ValueError):
    """An image file name that would resolve outside the image root."""


def resolve_image_path(root: str, file_name: str) -> str:
    """`root`/`file_name`, refusing names that are absolute or climb out of the root (PathEscapeError) and names
    no filesystem takes (ImageReadError `bad_path`: a NUL byte, a name the OS cannot resolve).

    Works for local roots and URL-like roots (`gs://bucket/images`); for local roots symlinks are resolved
    too, so a link pointing outside the root is refused as well.
    """
    if not isinstance(file_name, str) or "\x00" in file_name:
        raise ImageReadError("bad_path", f"image file name {file_name!r} is not a usable path (NUL byte or not text)")
    try:
        return _resolved(root, file_name)
    except (ValueError, OSError) as error:  # realpath on a name too long, a symlink loop, ...
        if isinstance(error, PathEscapeError):
            raise
        raise ImageReadError("bad_path", f"image file name {file_name!r} cannot be resolved under {root!r}: "
                                         f"{error}") from error


def _resolved(root: str, file_name: str) -> str:
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
