"""Hostile image files, written in memory: decompression bombs (a small file whose header claims a huge size) as
baseline JPEG and PNG, and files whose headers are valid but lie about the size."""
from __future__ import annotations

import struct
import zlib

import numpy as np

from tests.vlm.jpeg_files import encoded, photo

SOF0 = b"\xff\xc0"


def jpeg_claiming(width: int, height: int, quality: int = 90) -> bytes:
    """A complete 16x16 baseline JPEG (what the device decoder takes) whose SOF0 says `width` x `height`: a decoder
    that trusts it allocates height * width * 3 bytes before it finds the data short."""
    data = bytearray(encoded(photo(16, 16), quality=quality))
    frame = data.index(SOF0)
    # SOF0: marker, length (2), precision (1), height (2), width (2), components (1), ...
    data[frame + 5:frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_claiming(width: int, height: int) -> bytes:
    """A 16x16 RGB PNG whose IHDR says `width` x `height` (CRC recomputed, so the header itself is valid)."""
    data = bytearray(encoded(np.zeros((16, 16, 3), np.uint8), "PNG"))
    start = data.index(b"IHDR")  # chunk: length (4), type (4), data (13), crc (4)
    data[start + 4:start + 12] = struct.pack(">II", width, height)
    data[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 17])))
    return bytes(data)
