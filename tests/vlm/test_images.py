import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from vlm.images import ImageReadError, PathEscapeError, load_image, resolve_image_path


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
