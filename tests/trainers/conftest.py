"""Fixtures shared by the trainer tests."""
import json

import pytest
from PIL import Image, ImageDraw

from featurestore.reader import StoreReader
from tests.featurestore.store_factory import write_store


@pytest.fixture()
def store_and_images(tmp_path):
    """A four-shard store (tests.featurestore.store_factory) and a folder with a plain image per row of `images`."""
    root = write_store(tmp_path / "store", shards=4)
    images = tmp_path / "images"
    images.mkdir()
    for row in StoreReader(root).rows("images", ["file_name", "width", "height"]):
        Image.new("RGB", (row["width"], row["height"]), (200, 30, 30)).save(images / row["file_name"])
    return root, images


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """A two-shard store, its images (a red box on grey where the GT box is) and val.json over them."""
    return write_tiny_store(tmp_path_factory.mktemp("loop"))


def write_tiny_store(root, no_object: frozenset = frozenset()):
    """tiny_store's folder (store/, images/, val.json) under `root`; no_object: pseudo boxes (image_id, region_id)
    whose caption named no object (store_factory.write_store)."""
    store = write_store(root / "store", shards=2, no_object=no_object)
    images = root / "images"
    images.mkdir()
    annotations = {"images": [], "annotations": [], "categories": [{"id": 3, "name": "star"}, {"id": 4, "name": "circle"}]}
    for row in StoreReader(store).rows("images", ["image_id", "file_name", "width", "height"]):
        canvas = Image.new("RGB", (row["width"], row["height"]), (40, 40, 40))
        ImageDraw.Draw(canvas).rectangle([0, 0, 10, 12], fill=(230, 60, 60))
        canvas.save(images / row["file_name"])
        annotations["images"].append({k: row[k] for k in ("file_name", "width", "height")} | {"id": row["image_id"]})
        annotations["annotations"].append({"id": len(annotations["annotations"]) + 1, "image_id": row["image_id"],
                                           "category_id": 3, "bbox": [0, 0, 10, 12], "area": 120, "iscrowd": 0})
    (root / "val.json").write_text(json.dumps(annotations))
    return root
