import json

import numpy as np
import torch

from featurestore.cli import main
from featurestore.reader import StoreReader
from pipelines.coco import CocoDataset, ImageRecord
from pipelines.proposals import read_proposals
from tests.featurestore.store_factory import DIM, write_store


def test_export_writes_what_hdovd_reads(tmp_path, capsys):
    store = write_store(tmp_path / "store", shards=2)
    reader = StoreReader(store)
    images = reader.read_table("images").to_pylist()
    ids = [row["image_id"] for row in images]
    # Dataset order differs from id order, and one image of the dataset has no features.
    order = ids[::-1] + [424242]
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps({"images": [{"id": i} for i in order]}))
    out = tmp_path / "hdovd"
    assert main(["export-hdovd", str(store), str(out), "--annotations", str(annotations)]) == 0
    assert "6 images" in capsys.readouterr().out

    regions = reader.read_table("regions").to_pylist()
    first = images[0]
    payload = torch.load(out / "img_1000.pth", weights_only=True)
    assert payload["clip_full_image_embedding"].shape == (1, DIM)
    np.testing.assert_array_equal(payload["clip_full_image_embedding"][0].numpy(),
                                  np.asarray(first["embedding"], np.float32))
    mine = [r for r in regions if r["image_id"] == first["image_id"]]
    gt = [r["embedding"] for r in mine if r["source"] == "gt"]
    proposals = [r for r in mine if r["source"] == "proposal"]
    np.testing.assert_array_equal(payload["gt_clip_image_embedding"].numpy(), np.asarray(gt, np.float32))
    np.testing.assert_array_equal(payload["proposal_clip_image_embedding"].numpy(),
                                  np.asarray([r["embedding"] for r in proposals], np.float32))

    dataset = CocoDataset((), tuple(ImageRecord(i, f"{i}.jpg", 64, 48) for i in order), {}, str(annotations))
    loaded = read_proposals(str(out / "proposals.pkl"), dataset)  # through the data-only unpickler
    np.testing.assert_allclose(loaded.for_image(first["image_id"]),
                               [list(r["box"]) + [r["proposal_score"]] for r in proposals])
    assert loaded.for_image(424242).shape == (0, 5)

    classes = torch.load(out / "class_embeddings.pt", weights_only=True)
    assert classes.shape == (2, DIM)  # base ("star") first, then novel ("circle")
    np.testing.assert_array_equal(classes.numpy(), np.eye(2, DIM, dtype=np.float32))
