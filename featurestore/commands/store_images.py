"""The images behind a store, for tools that draw: where they are and how to open one safely."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from featurestore.reader import StoreReader


def image_root(reader: StoreReader, override: str | None) -> str:
    """--image-root, else the image root extract-features read; an error naming the flag when neither exists."""
    root = override or reader.stage_config("extract_features").get("config", {}).get("dataset", {}).get("image_root")
    if not root or not Path(root).is_dir():
        raise FileNotFoundError(f"image folder {root!r} not found; give it with --image-root")
    return root


def open_image(root: str, file_name: str) -> Image.Image:
    """The RGB image `file_name` under `root`; names that escape the root are refused."""
    from vlm.images import resolve_image_path

    path = resolve_image_path(root, file_name)
    if not Path(path).is_file():
        raise FileNotFoundError(f"image file not found: {path} (flag --image-root)")
    with Image.open(path) as image:
        return image.convert("RGB")
