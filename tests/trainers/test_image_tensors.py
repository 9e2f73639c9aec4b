"""Image files for training and evaluation go through vlm.images: pixels as decoded there, names kept inside the
image root, and errors that name the image id, the file and the config key."""
import numpy as np
import pytest
import torch
from PIL import Image

from trainers.data.image_tensors import ImageFileError, load_image_tensor
from vlm.images import load_image


def test_pixels_are_the_decoded_file_scaled_to_unit_range(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_image_tensor(str(tmp_path), "a.png", 7, "image_root")
    assert image.shape == (3, 6, 5) and image.dtype == torch.float32
    expected = torch.from_numpy(load_image(str(tmp_path / "a.png")).pixels).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image, expected, rtol=1e-6, atol=1e-6)


def test_a_name_that_escapes_the_root_names_the_image_the_file_and_the_key(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    with pytest.raises(ImageFileError, match=r"image 3 \(file '\.\./secret\.png'\).*escapes.*eval\.image_root="):
        load_image_tensor(str(root), "../secret.png", 3, "eval.image_root")


def test_missing_and_unreadable_files_name_the_image_and_the_key(tmp_path):
    with pytest.raises(ImageFileError, match=r"image 11 \(file 'gone\.png'\).*not found.*image_root="):
        load_image_tensor(str(tmp_path), "gone.png", 11, "image_root")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageFileError, match=r"image 12 \(file 'text\.png'\).*image_root="):
        load_image_tensor(str(tmp_path), "text.png", 12, "image_root")
