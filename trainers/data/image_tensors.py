"""Image files as detector inputs: the store's (or the evaluation set's) file name resolved inside its image root
and decoded by `vlm.images`, the project's one image decoder."""
from __future__ import annotations

import torch

from vlm.images import ImageReadError, PathEscapeError, load_image, resolve_image_path


class ImageFileError(RuntimeError):
    """An image the trainer cannot read; the message names the image id, the file and the config key to check."""


def load_image_tensor(image_root: str, file_name: str, image_id: int, config_key: str) -> torch.Tensor:
    """(3, H, W) float in [0, 1] of the file `file_name` under `image_root`; EXIF orientation is not applied (boxes
    refer to the stored pixels). A name that escapes the root or a missing or unreadable file is an ImageFileError
    naming `image_id`, the file and `config_key` (the key that sets `image_root`)."""
    try:
        path = resolve_image_path(str(image_root), file_name)
        pixels = load_image(path).pixels
    except (PathEscapeError, ImageReadError) as error:
        raise ImageFileError(f"image {image_id} (file {file_name!r}) cannot be read: {error}; "
                             f"check {config_key}={image_root}") from error
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255)
