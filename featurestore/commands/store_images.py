"""The images behind a store, for tools that draw: where they are and how to open one safely."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES
from vlm.images import ImageReadError, load_image, resolve_image_path


def image_root(reader: StoreReader, override: str | None) -> str:
    """--image-root, else the image root extract-features read; an error naming the flag when neither exists."""
    extract = reader.manifest.stages.get(EXTRACT_FEATURES)
    root = override or (extract.setting("dataset.image_root") if extract else None)
    if not root or not Path(root).is_dir():
        raise FileNotFoundError(f"image folder {root!r} not found; give it with --image-root")
    return root


def open_image(root: str, file_name: str) -> Image.Image:
    """The RGB image `file_name` under `root`, decoded as extract-features decodes it; names that escape the root
    are refused."""
    path = resolve_image_path(root, file_name)
    try:
        return Image.fromarray(load_image(path).pixels)
    except ImageReadError as error:
        if error.kind == "missing":  # the usual cause is a wrong root, which the flag fixes
            raise FileNotFoundError(f"{error} (flag --image-root)") from error
        raise
