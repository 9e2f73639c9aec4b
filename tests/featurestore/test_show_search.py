"""show and search on a real store with real images and a tiny real CLIP (faiss for search)."""
import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from featurestore.cli import main
from featurestore.commands.show import COLOURS, region_lines
from featurestore.writer import ShardWriter
from tests.pseudo_label_store import write_label_store
from tests.tiny_teachers import CLIP_DIM


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = write_label_store(tmp_path_factory.mktemp("show"), shards=1)
    writer = ShardWriter(store.root, "pseudo_labels", CLIP_DIM)
    writer.open_stage({"captioner": {"name": "given"}}, "hash-labels")
    writer.commit(0, {"pseudo_labels": {
        "image_id": [100, 100], "region_id": [1, 2], "caption": ["a red star on a wall", "a heart"],
        "candidates": [["red star", "star", "wall"], ["heart"]], "label": ["star", "heart"], "cos": [0.99, 0.98],
        "score": [1.3, 1.29], "text_embedding": np.stack([store.word_embeddings["star"],
                                                          store.word_embeddings["heart"]])},
        "failures": {"image_id": [100], "region_id": [3], "file_name": ["0100.png"], "stage": ["pseudo_labels"],
                     "kind": ["empty_caption"], "message": ["region 3 of image 100: the captioner gave an empty caption"]}},
        fingerprint="pl-0")
    writer.finish_stage()
    return store


def test_show_draws_boxes_and_lists_labels(store, tmp_path, capsys):
    out = tmp_path / "show.png"
    assert main(["show", str(store.root), "--image-id", "100", "-o", str(out), "--image-root",
                 str(store.image_root)]) == 0
    assert "3 labelled or failed pseudo boxes" in capsys.readouterr().out
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[1] == round(64 * 512 / 48) and image.shape[0] > 512  # short side upscaled to 512, panel below
    blue = (image[..., 0] == 40) & (image[..., 1] == 110) & (image[..., 2] == 255)
    red = (image[..., 0] == 230) & (image[..., 1] == 50) & (image[..., 2] == 50)
    assert blue.sum() > 100 and red.sum() > 100  # labelled boxes blue, the failed one red


def test_show_uses_the_store_image_root_and_names_unknown_ids(store, tmp_path, capsys):
    assert main(["show", str(store.root), "--image-id", "101", "-o", str(tmp_path / "a.png")]) == 0
    assert main(["show", str(store.root), "--image-id", "999", "-o", str(tmp_path / "b.png")]) == 2
    assert "999" in capsys.readouterr().out


def test_search_finds_regions_embedded_as_the_text(store, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["search", str(store.root), "star", "-k", "2", "-o", str(out), "--source", "proposal", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    # Region 1 of every image is embedded as the CLIP text embedding of "star" (prompt "a photo of a star.").
    assert [(h["region_id"], h["source"]) for h in hits] == [(1, "proposal"), (1, "proposal")]
    assert all(h["cos"] == pytest.approx(1.0, abs=2e-3) for h in hits)
    assert Image.open(out).size == (2 * 128, 1 * (128 + 28))


def test_show_search_and_labels_read_the_store_in_a_bucket(store, tmp_path, s3_bucket, capsys):
    """The same store copied file by file into a bucket (commit records name store-relative paths, so the copy is
    the same store); every tool gives the same output from either."""
    import fsspec

    s3 = fsspec.filesystem("s3")
    url = f"{s3_bucket}/store"
    for path in sorted(p for p in store.root.rglob("*") if p.is_file()):
        s3.pipe_file(f"{url}/{path.relative_to(store.root).as_posix()}", path.read_bytes())
    outputs = {}
    for name, root in (("local", str(store.root)), ("s3", url)):
        assert main(["show", root, "--image-id", "100", "-o", str(tmp_path / f"show-{name}.png"),
                     "--image-root", str(store.image_root)]) == 0
        assert main(["search", root, "star", "-k", "2", "-o", str(tmp_path / f"search-{name}.png")]) == 0
        capsys.readouterr()
        assert main(["labels", root, "--json"]) == 0
        outputs[name] = json.loads(capsys.readouterr().out)
    for tool in ("show", "search"):
        assert (tmp_path / f"{tool}-s3.png").read_bytes() == (tmp_path / f"{tool}-local.png").read_bytes(), tool
    assert outputs["s3"] == outputs["local"]


def test_show_marks_a_box_whose_caption_names_no_object():
    tables = {"regions": pa.Table.from_pylist([{"region_id": 1, "source": "proposal", "box": [1.0, 1.0, 5.0, 5.0],
                                                "category_id": None}]),
              "pseudo_labels": pa.Table.from_pylist([{"region_id": 1, "label": None, "cos": None, "score": 0.0,
                                                      "caption": "a patch of striped background", "candidates": []}])}
    drawn, lines = region_lines(tables)
    assert drawn == [([1.0, 1.0, 5.0, 5.0], "1 no object", COLOURS["no_object"])]
    assert lines == ['#1 no object (weight 0) <- "a patch of striped background"']
