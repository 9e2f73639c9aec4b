import hashlib
import os
import time

import numpy as np
import pytest
from PIL import Image

from tests.vlm.jpeg_files import encoded
from tests.vlm.poison_images import jpeg_claiming, png_claiming
from vlm.images import ImageReadError, PathEscapeError, SizeCheck, decode_image, load_image, resolve_image_path


def test_decodes_rgb_and_hashes_bytes(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((6, 9), 200, np.uint8), mode="L").save(path)
    decoded = load_image(str(path))
    assert decoded.pixels.shape == (6, 9, 3) and decoded.pixels.dtype == np.uint8
    assert (decoded.width, decoded.height) == (9, 6)
    assert decoded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["missing", "truncated", "not_an_image"])
def test_bad_files_have_a_kind_and_name_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    if kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "not_an_image":
        path.write_text("hello")
    with pytest.raises(ImageReadError, match=f"{kind}.jpg") as error:
        load_image(str(path))
    assert error.value.kind == kind


def test_image_paths_cannot_escape_the_root(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    assert resolve_image_path(str(root), "sub/a.jpg") == f"{root}/sub/a.jpg"
    assert resolve_image_path("gs://bucket/images", "a/b.jpg") == "gs://bucket/images/a/b.jpg"
    for name in ("../secret.jpg", "/etc/passwd", "a/../../x.jpg", "C:/x.jpg"):
        with pytest.raises(PathEscapeError, match="escapes the image root"):
            resolve_image_path(str(root), name)
    os.symlink(tmp_path, root / "link")
    with pytest.raises(PathEscapeError, match="outside the image root"):
        resolve_image_path(str(root), "link/file.jpg")


# -- poison images: every one is an ImageReadError with its kind, decided before any pixel is decoded ------------------
@pytest.mark.parametrize("name, data, expected, kind", [
    ("bomb.jpg", jpeg_claiming(40000, 40000), None, "too_large"),  # above PIL's own refusal threshold
    ("bomb.png", png_claiming(60000, 60000), None, "too_large"),
    ("big.jpg", jpeg_claiming(13370, 13370), None, "too_large"),  # PIL alone would decode it (+0.5 GB)
    ("big.png", png_claiming(12000, 12000), (12000, 12000), "too_large"),  # even where the annotation agrees
    ("liar.jpg", jpeg_claiming(5000, 4000), (16, 16), "size_mismatch"),  # under the limit, not the annotated size
])
def test_a_header_above_the_limit_or_unlike_the_annotation_is_refused_undecoded(tmp_path, name, data, expected,
                                                                               kind):
    path = tmp_path / name
    path.write_bytes(data)
    started = time.perf_counter()
    with pytest.raises(ImageReadError, match=name) as error:
        load_image(str(path), check=SizeCheck(expected))
    assert error.value.kind == kind
    assert time.perf_counter() - started < 0.5  # the header answers; decoding 13370² would take seconds


def test_the_pixel_limit_is_the_configured_one(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path)
    assert load_image(str(path), check=SizeCheck((40, 30), max_pixels=1200)).width == 40
    with pytest.raises(ImageReadError, match=r"40x30 \(1200 pixels\), above the limit of 1199") as error:
        load_image(str(path), check=SizeCheck((40, 30), max_pixels=1199))
    assert error.value.kind == "too_large"


@pytest.mark.parametrize("name", ["a\x00.jpg", "x" * 5000 + ".jpg"])
def test_a_name_no_filesystem_takes_is_a_bad_path(tmp_path, name):
    with pytest.raises(ImageReadError) as error:
        load_image(resolve_image_path(str(tmp_path), name))
    assert error.value.kind in ("bad_path", "unreadable")
    with pytest.raises(ImageReadError) as error:
        resolve_image_path(str(tmp_path), "a\x00.jpg")
    assert error.value.kind == "bad_path"


def test_hostile_headers_never_raise_anything_but_an_image_read_error(tmp_path):
    """Every prefix of files of several formats, and each with one byte flipped in its header: PIL's plugins raise
    many kinds of errors on such data; each must come out as a dead letter."""
    pixels = np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)
    sources = [encoded(pixels, fmt) for fmt in ("PNG", "GIF", "BMP", "TIFF", "WEBP", "JPEG")]
    seen = set()
    for source in sources:
        variants = [source[:cut] for cut in range(0, min(len(source), 120), 3)]
        variants += [source[:k] + bytes([source[k] ^ 0xFF]) + source[k + 1:] for k in range(min(len(source), 64))]
        for data in variants:
            try:
                decode_image(data, "hostile", SizeCheck((10, 12)))
            except ImageReadError as error:
                seen.add(error.kind)
    assert seen <= {"truncated", "not_an_image", "corrupt", "size_mismatch", "too_large"} and "truncated" in seen
