import json
import pickle

import numpy as np
import pytest

from pipelines.coco import AnnotationError, CocoDataset, ImageRecord
from pipelines.proposals import read_proposals
from pipelines.safe_pickle import UnsafePickleError

DATASET = CocoDataset((), (ImageRecord(5, "a.jpg", 50, 50), ImageRecord(2, "b.jpg", 50, 50)), {}, "inst.json")


def test_results_json_grouped_by_image_with_unknown_ids(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"image_id": 5, "bbox": [1, 2, 3, 4], "score": 0.5},
                                {"image_id": 77, "bbox": [1, 2, 3, 4], "score": 0.5},
                                {"image_id": 5, "bbox": [0, 0, 10, 10], "score": 0.9}]))
    proposals = read_proposals(str(path), DATASET)
    np.testing.assert_allclose(proposals.for_image(5), [[1, 2, 4, 6, 0.5], [0, 0, 10, 10, 0.9]])
    assert proposals.for_image(2).shape == (0, 5)
    assert [(u.image_id, u.count) for u in proposals.unknown] == [(77, 1)]


def test_mmdet_pickle_in_dataset_order(tmp_path):
    path = tmp_path / "p.pkl"
    arrays = [np.array([[1, 1, 5, 5, 0.9]], np.float32), np.array([[2, 2, 6, 6]], np.float32)]
    path.write_bytes(pickle.dumps(arrays, protocol=4))
    proposals = read_proposals(str(path), DATASET)
    np.testing.assert_allclose(proposals.for_image(5), arrays[0])
    assert proposals.for_image(2)[0, :4].tolist() == [2, 2, 6, 6]  # scores filled, order kept
    path.write_bytes(pickle.dumps(arrays[:1]))
    with pytest.raises(AnnotationError, match="1 entries but inst.json has 2 images"):
        read_proposals(str(path), DATASET)


class _Exploit:
    def __reduce__(self):
        return (eval, ("1+1",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([_Exploit(), np.zeros((0, 5))]))
    with pytest.raises(UnsafePickleError, match="evil.pkl: refusing to load builtins.eval"):
        read_proposals(str(path), DATASET)
