"""Which files the device's JPEG decoder gets: a scan of the JPEG markers up to the first scan, no pixel decoded.

nvJPEG's hardware decoder (what `torchvision.io.decode_jpeg(..., device="cuda")` uses on A100/H100-class GPUs) takes
baseline JPEGs in batches; torchvision sends progressive ones through a slower one-by-one path, and CMYK / YCCK
(4-component, Adobe) files have colour conversions PIL applies and the device decoder does not. Truncated files
must keep today's dead letter (`truncated`, from PIL), and a decoder that returns gray for missing data would turn
them into embeddings. So only plain, complete, 8-bit baseline (SOF0/SOF1) files with 1 or 3 components go to the
device; everything else is decoded by PIL, exactly as on the host path.
"""
from __future__ import annotations

from dataclasses import dataclass

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
APP14 = 0xEE  # Adobe segment: colour transform of 3- and 4-component files
SEQUENTIAL_HUFFMAN = (0xC0, 0xC1)  # SOF0 baseline, SOF1 extended sequential
# Start-of-frame markers: 0xC0-0xCF except DHT (C4), JPG (C8) and DAC (CC).
START_OF_FRAME = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM carry no length


@dataclass(frozen=True)
class JpegHeader:
    frame: int  # the start-of-frame marker (0xC0 baseline, 0xC2 progressive, ...)
    precision: int  # bits per sample
    height: int
    width: int
    components: int
    adobe: bool  # an APP14 "Adobe" segment (colour transform flag)
    complete: bool  # the data ends with the end-of-image marker

    @property
    def device_decodable(self) -> bool:
        return (self.frame in SEQUENTIAL_HUFFMAN and self.precision == 8 and self.components in (1, 3)
                and not self.adobe and self.complete)


def read_jpeg_header(data: bytes) -> JpegHeader | None:
    """The frame header of a JPEG, or None when `data` is not one whose header can be read to its first scan."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != SOI:
        return None
    position, frame, adobe = 2, None, False
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in STANDALONE:
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        segment = data[position + 4:position + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return None
        if marker == APP14 and segment.startswith(b"Adobe"):
            adobe = True
        elif marker in START_OF_FRAME and len(segment) >= 6:
            frame = (marker, segment[0], int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big"),
                     segment[5])
        elif marker == SOS:
            if frame is None:
                return None
            complete = data.rstrip(b"\x00").endswith(bytes((0xFF, EOI)))
            return JpegHeader(*frame, adobe=adobe, complete=complete)
        position += 2 + length
    return None
