"""The proposal network's data: base boxes only (a file with a novel box is refused), what is left out and
counted, and images that cannot be read."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.coco import AnnotationError
from trainers.proposer.base_boxes import NovelAnnotationError, read_base_boxes
from trainers.proposer.dataset import BaseBoxDataset, ImageAugmentation, UnreadableImage, collate_samples

SPLIT = {"base": ["circle", "square"], "novel": ["star"]}
CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "star"},
              {"id": 4, "name": "cloud"}]  # cloud: in neither side of the split


def _annotation(number: int, image_id: int, category_id: int, bbox, iscrowd: int = 0) -> dict:
    return {"id": number, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": iscrowd,
            "area": bbox[2] * bbox[3]}


def _write(tmp_path, annotations: list[dict]) -> tuple[str, str]:
    images = [{"id": i, "file_name": f"{i}.png", "width": 40, "height": 30} for i in (1, 2, 3)]
    path = tmp_path / "train_base.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    split = tmp_path / "split.json"
    split.write_text(json.dumps(SPLIT))
    return str(path), str(split)


def test_a_file_with_novel_boxes_is_refused_naming_the_file_key_and_classes(tmp_path):
    path, split = _write(tmp_path, [_annotation(1, 1, 1, [0, 0, 5, 5]), _annotation(2, 2, 3, [1, 1, 5, 5])])
    with pytest.raises(NovelAnnotationError, match=r"train_base.json \(proposer.data.annotations\) has 1 boxes of "
                                                   r"novel categories .*'star' \(id 3\): 1"):
        read_base_boxes(path, split)


def test_novel_categories_may_be_listed_and_what_cannot_train_is_left_out_and_counted(tmp_path):
    path, split = _write(tmp_path, [
        _annotation(1, 1, 1, [2, 3, 10, 5]),
        _annotation(2, 1, 2, [35, 25, 20, 20]),  # clipped to the 40 x 30 image
        _annotation(3, 1, 2, [0, 0, 10, 10], iscrowd=1),
        _annotation(4, 2, 4, [0, 0, 5, 5]),  # cloud: image 2 has no base box left
        _annotation(5, 3, 1, [45, 0, 5, 5]),  # outside the image: empty once clipped
        _annotation(6, 3, 9, [0, 0, 5, 5]),  # category 9 is not in the file
        _annotation(7, 8, 1, [0, 0, 5, 5]),  # image 8 is not in the file
    ])
    boxes = read_base_boxes(path, split)
    assert [image.record.image_id for image in boxes.images] == [1]
    np.testing.assert_array_equal(boxes.images[0].boxes, np.array([[2, 3, 12, 8], [35, 25, 40, 30]], np.float32))
    assert boxes.left_out == {"crowd annotations": 1, "empty boxes": 1, "images without a base box": 2,
                              "annotations of categories in neither side of the split": 1,
                              "annotations of unknown categories": 1, "annotations of unknown images": 1}
    assert "1 images, 2 base boxes" in boxes.summary()
    path, split = _write(tmp_path, [_annotation(4, 2, 4, [0, 0, 5, 5])])
    with pytest.raises(AnnotationError, match="no image with a base box to train on"):
        read_base_boxes(path, split)


def test_samples_flip_with_their_boxes_reproducibly_and_bad_images_are_set_apart(tmp_path):
    path, split = _write(tmp_path, [_annotation(n, n, 1, [2, 3, 10, 5]) for n in (1, 2, 3)])
    root = tmp_path / "images"
    root.mkdir()
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    Image.fromarray(pixels).save(root / "1.png")
    (root / "2.png").write_bytes(b"not an image")
    Image.new("RGB", (20, 30)).save(root / "3.png")  # not the size the annotations give
    dataset = BaseBoxDataset(read_base_boxes(path, split), str(root), ImageAugmentation(horizontal_flip=1.0))
    batch = collate_samples([dataset[i] for i in range(3)])
    assert batch.image_ids == [1]
    assert batch.images[0][:, 0, 39].tolist() == [1.0, 1.0, 1.0]  # flipped: white on the right
    assert batch.boxes[0].tolist() == [[40 - 12, 3, 40 - 2, 8]]
    assert [(u.image_id, u.file_name) for u in batch.unreadable] == [(2, "2.png"), (3, "3.png")]
    assert "proposer.data.image_root" in batch.unreadable[0].reason
    assert "decodes to 20x30" in batch.unreadable[1].reason
    coin = BaseBoxDataset(dataset.base_boxes, str(root), ImageAugmentation(horizontal_flip=0.5), seed=3)
    flips = []
    for epoch in range(8):
        coin.set_epoch(epoch)
        first, again = (bool(coin[0].boxes[0, 0] != 2) for _ in range(2))
        assert first == again  # the same sample of the same epoch flips the same way (a resumed epoch repeats)
        flips.append(first)
    assert set(flips) == {True, False}
    assert isinstance(dataset[1], UnreadableImage) and torch.is_tensor(dataset[0].image)
    every_way = BaseBoxDataset(dataset.base_boxes, str(root), ImageAugmentation(1.0, 1.0, 1.0))[0]
    # Mirrored left-right ([28, 3, 38, 8]), top-bottom ([28, 22, 38, 27]), then transposed: 40 high, 30 wide.
    assert every_way.image.shape == (3, 40, 30) and every_way.boxes.tolist() == [[22, 28, 27, 38]]
    assert every_way.image[:, 39, 0].tolist() == [1.0, 1.0, 1.0]  # the white half is now the bottom one
