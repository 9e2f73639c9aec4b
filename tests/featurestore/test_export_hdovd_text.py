"""export-hdovd's proposal_clip_text_embedding: pseudo-label text embeddings aligned with the proposals."""
import numpy as np
import torch

from featurestore.cli import main
from featurestore.reader import StoreReader
from tests.featurestore.store_factory import DIM, write_store


def test_text_embeddings_follow_proposal_order(tmp_path):
    store = write_store(tmp_path / "store", shards=1)
    assert main(["export-hdovd", str(store), str(tmp_path / "out")]) == 0
    reader = StoreReader(store)
    labels = {(r["image_id"], r["region_id"]): r["text_embedding"] for r in reader.read_table("pseudo_labels").to_pylist()}
    proposals = [r for r in reader.read_table("regions").to_pylist() if r["image_id"] == 1000 and r["source"] == "proposal"]
    payload = torch.load(tmp_path / "out" / "img_1000.pth", weights_only=True)
    expected = np.asarray([labels[(r["image_id"], r["region_id"])] for r in proposals], np.float32)
    assert payload["proposal_clip_text_embedding"].shape == (len(proposals), DIM)
    np.testing.assert_array_equal(payload["proposal_clip_text_embedding"].numpy(), expected)


def test_no_text_embeddings_without_pseudo_labels(tmp_path):
    store = write_store(tmp_path / "store", shards=1, with_pseudo_labels=False)
    assert main(["export-hdovd", str(store), str(tmp_path / "out")]) == 0
    assert "proposal_clip_text_embedding" not in torch.load(tmp_path / "out" / "img_1000.pth", weights_only=True)
