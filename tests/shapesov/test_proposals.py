"""ShapesOV proposals: both formats agree, the pickle passes a restricted unpickler, and they act like an RPN."""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from shapesov.__main__ import main as shapes_main
from shapesov.proposals import box_iou

# Only what an mmdet proposal list needs: numpy arrays rebuilt from their pickled parts.
_ALLOWED = {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype")}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)


def _restricted_load(data: bytes):
    return _RestrictedUnpickler(io.BytesIO(data)).load()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    assert shapes_main(["--out", str(out), "--seed", "3", "--train", "40", "--val", "4"]) == 0
    return out


def test_restricted_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError):
        _restricted_load(pickle.dumps(print))


@pytest.mark.parametrize("split", ["train", "val"])
def test_pickle_and_json_formats_agree(dataset, split):
    arrays = _restricted_load((dataset / "proposals" / f"{split}.pkl").read_bytes())
    coco = json.loads((dataset / "annotations" / ("val.json" if split == "val" else "train_base.json")).read_text())
    rows = json.loads((dataset / "proposals" / f"{split}.json").read_text())
    assert isinstance(arrays, list) and len(arrays) == len(coco["images"])
    for image, props in zip(coco["images"], arrays):
        assert props.dtype == np.float32 and props.ndim == 2 and props.shape[1] == 5
        assert np.all(np.diff(props[:, 4]) <= 0), "sorted by score"
        assert np.all(props[:, :2] >= 0) and np.all(props[:, 2] <= image["width"]) \
            and np.all(props[:, 3] <= image["height"])
        mine = [r for r in rows if r["image_id"] == image["id"]]
        as_xyxy = np.array([[x, y, x + w, y + h, r["score"]] for r in mine for x, y, w, h in [r["bbox"]]])
        np.testing.assert_allclose(as_xyxy, props, atol=0.02)


def test_proposals_behave_like_a_class_agnostic_rpn(dataset):
    arrays = _restricted_load((dataset / "proposals" / "train.pkl").read_bytes())
    anns = []
    for name in ("train_base.json", "train_novel_heldout.json"):
        anns += json.loads((dataset / "annotations" / name).read_text())["annotations"]
    images = json.loads((dataset / "annotations" / "train_base.json").read_text())["images"]
    found = {"base": [], "novel": []}
    novel_ids = set(json.loads((dataset / "ov_split.json").read_text())["novel_ids"])
    matched_scores, background_scores = [], []
    for image, props in zip(images, arrays):
        mine = [a for a in anns if a["image_id"] == image["id"]]
        gt = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in mine)])
        iou = box_iou(props[:, :4].astype(np.float64), gt)
        for k, ann in enumerate(mine):
            found["novel" if ann["category_id"] in novel_ids else "base"].append(iou[:, k].max() >= 0.5)
        matched_scores += props[iou.max(axis=1) >= 0.5, 4].tolist()
        background_scores += props[iou.max(axis=1) < 0.1, 4].tolist()
    assert 0.7 <= np.mean(found["base"]) < 1.0 and np.mean(found["novel"]) >= 0.6  # most, not all
    assert len(background_scores) > len(images)  # false positives on background
    assert np.mean(matched_scores) > np.mean(background_scores) + 0.3
