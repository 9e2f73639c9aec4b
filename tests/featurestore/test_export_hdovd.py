"""export-hdovd against a replay of the official HD-OVD trainer's loader (tests/featurestore/official_hdovd_loader.py)
on a store the real extract-features job made of hostile inputs (tests/featurestore/hostile_hdovd_sample.py)."""
from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from featurestore.arrow import embeddings_to_numpy
from featurestore.cli import main
from featurestore.layout import TMP_PREFIX
from featurestore.reader import StoreReader
from pipelines.coco import read_coco
from pipelines.proposals import read_proposals
from pipelines.safe_pickle import load_data_pickle
from tests.featurestore import official_hdovd_loader as official
from tests.featurestore.hostile_hdovd_sample import (MISSING, NO_LABELS, NO_OBJECT_RANK, NOT_IN_TRAINING_FILE,
                                                     write_hostile_store)
from tests.featurestore.store_factory import write_store
from tests.float32 import REL


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return write_hostile_store(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def exported(hostile, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "hdovd"
    code = main(["export-hdovd", str(hostile.store), str(out), "--annotations", str(hostile.training_file),
                 "--restrict-annotations"])
    assert code == 0
    return out


@dataclass(frozen=True)
class StoreRows:
    images: dict  # image id → (D,) float32 image embedding
    regions: dict  # (image id, region id) → region row, its embedding (D,) float32
    texts: dict  # (image id, region id) → (D,) float32 pseudo-label text embedding, labelled pseudo boxes only
    classes: dict  # class name → (category id, (D,) float32 text embedding)


def _store_rows(store) -> StoreRows:
    reader = StoreReader(store)
    images = reader.read_table("images")
    regions = reader.read_table("regions")
    vectors = embeddings_to_numpy(regions.column("embedding")).astype(np.float32)
    labels = reader.read_table("pseudo_labels")
    labels = labels.filter(labels.column("label").is_valid())
    return StoreRows(
        images=dict(zip(images.column("image_id").to_pylist(),
                        embeddings_to_numpy(images.column("embedding")).astype(np.float32))),
        regions={(r["image_id"], r["region_id"]): {**r, "embedding": v}
                 for r, v in zip(regions.drop_columns(["embedding"]).to_pylist(), vectors)},
        texts=dict(zip(zip(labels.column("image_id").to_pylist(), labels.column("region_id").to_pylist()),
                       embeddings_to_numpy(labels.column("text_embedding")).astype(np.float32))),
        classes={r["name"]: (r["category_id"], np.asarray(r["embedding"], np.float32))
                 for r in reader.read_table("vocab").to_pylist() if r["kind"] == "class"})


def _unit(vector: np.ndarray) -> np.ndarray:
    return F.normalize(torch.from_numpy(vector), dim=-1).numpy()


def _region_at(rows: dict, image_id: int, source: str, box: np.ndarray, scale: np.ndarray) -> dict:
    """The store region of `image_id` whose box, resized like the official loader does, is `box`."""
    hits = [r for (i, _), r in rows.items() if i == image_id and r["source"] == source
            and np.allclose(np.asarray(r["box"]) * scale, box, rtol=REL, atol=1e-2)]
    assert len(hits) == 1, (image_id, source, box, hits)
    return hits[0]


def _scale(info: dict) -> np.ndarray:
    long_edge, short_edge = max(official.IMAGE_SCALE), min(official.IMAGE_SCALE)
    width, height = info["width"], info["height"]
    factor = min(long_edge / max(width, height), short_edge / min(width, height))
    new_w, new_h = int(width * factor + 0.5), int(height * factor + 0.5)
    return np.array([new_w / width, new_h / height] * 2, dtype=np.float32)


@pytest.mark.parametrize("unpickle", [pickle.loads, lambda data: load_data_pickle(data, "proposals.pkl")],
                         ids=["plain pickle", "our restricted unpickler"])
@pytest.mark.parametrize("filter_empty_gt", [True, False], ids=["training filter", "every image"])
def test_the_official_loader_reads_every_image_and_each_row_is_the_right_one(hostile, exported, unpickle,
                                                                             filter_empty_gt):
    store = _store_rows(hostile.store)
    name_of = {category_id: name for name, (category_id, _) in store.classes.items()}
    annotation_file = exported / "annotations.json"  # --restrict-annotations: image 7 has no features
    infos = {r["id"]: r for r in json.loads(annotation_file.read_text())["images"]}
    assert MISSING not in infos and NOT_IN_TRAINING_FILE not in infos
    images = official.load_training_images(str(annotation_file), (exported / "proposals.pkl").read_bytes(),
                                           list(store.classes), unpickle, filter_empty_gt=filter_empty_gt)
    # The training filter keeps the images with a labelled annotation (2 has only a crowd box: no GT row) and
    # drops 4 (30 px wide); without it, 5 (no annotation at all) reaches the RoI head too.
    assert [image.image_id for image in images] == ([3, 1, 8, 2] if filter_empty_gt else [3, 1, 8, 2, 5])
    seen_dummy = False
    replayed_pseudo_boxes = 0
    for image in images:
        inputs = official.roi_head_inputs(image, str(exported / "features") + "/")
        scale = _scale(infos[image.image_id])
        np.testing.assert_array_equal(inputs.full_image.numpy(), store.images[image.image_id][None])
        prompts = official.class_prompts(str(exported / "class_embeddings.pt"), image.gt_labels).numpy()
        for box, row, prompt in zip(image.gt_boxes, inputs.gt_features.numpy(), prompts):
            region = _region_at(store.regions, image.image_id, "gt", box, scale)
            np.testing.assert_allclose(row, _unit(region["embedding"]), rtol=REL, atol=1e-6)
            # The label mmdet gives the box picks the class embedding of the store's category of that region.
            np.testing.assert_allclose(prompt, _unit(store.classes[name_of[region["category_id"]]][1]),
                                       rtol=REL, atol=1e-6)
        for box, row, text in zip(inputs.pseudo_boxes.numpy(), inputs.pseudo_image_features.numpy(),
                                  inputs.pseudo_text_features.numpy()):
            region = _region_at(store.regions, image.image_id, "proposal", box, scale)
            np.testing.assert_allclose(row, _unit(region["embedding"]), rtol=REL, atol=1e-6)
            # Every pseudo box the official trainer sees has a pseudo label: the boxes whose caption named no
            # object, and those without a pseudo_labels row, were left out; a zero text row would be a class.
            np.testing.assert_allclose(text, _unit(store.texts[(image.image_id, region["region_id"])]), rtol=REL,
                                       atol=1e-6)
            replayed_pseudo_boxes += 1
        assert len(inputs.pseudo_boxes) <= official.MAX_PSEUDO_BOXES and torch.isfinite(inputs.weights).all()
        assert len(inputs.matched_features) == len(image.gt_boxes) + len(inputs.pseudo_boxes)
        seen_dummy |= not image.proposals.any()
    # Image 1's 7 proposals lose the no-object one and, in the RoI head, the one too thin: 5 left, beside image 2's
    # 2 (and image 5's 2 without the filter); image 8 (no pseudo_labels row) has none left, like image 3 (no
    # proposal): both get the dummy row.
    assert seen_dummy and replayed_pseudo_boxes == 5 + 2 + (2 if not filter_empty_gt else 0)


def test_gt_rows_follow_the_official_rule_and_the_dummy_row_is_where_the_loader_needs_it(hostile, exported):
    # Image 3: of its crowd, ignore, area-0, outside, unknown-category and plain boxes, only the plain one (36) is a
    # GT row for mmdet; the store has GT regions for 32 (ignore) and 33 (area 0) too, left out of the .pth.
    odd = torch.load(exported / "features" / "odd.pth", weights_only=True)
    assert set(odd) == {"clip_full_image_embedding", "gt_clip_image_embedding", "proposal_clip_image_embedding",
                        "proposal_clip_text_embedding"}
    assert odd["gt_clip_image_embedding"].shape[0] == 1
    assert odd["proposal_clip_image_embedding"].shape[0] == 1 and not odd["proposal_clip_image_embedding"].any()
    assert odd["proposal_clip_text_embedding"].shape[0] == 1 and not odd["proposal_clip_text_embedding"].any()
    proposals = pickle.loads((exported / "proposals.pkl").read_bytes())
    order = [r["id"] for r in json.loads((exported / "annotations.json").read_text())["images"]]
    assert order == [3, 1, 8, 2, 5, 4]  # the training file's order, image 7 (missing) left out
    # Image 1: 7 proposals but the one captioned with no object; image 8: none has a pseudo_labels row.
    assert [p.shape for p in proposals] == [(0, 5), (6, 5), (0, 5), (2, 5), (2, 5), (1, 5)]
    assert all(p.dtype == np.float32 for p in proposals)
    # .pth names: the file name without folders and without its last 4 characters, whatever they are.
    assert sorted(p.name for p in (exported / "features").iterdir()) == [
        "0001.pth", "nolabel.pth", "odd.pth", "photo..pth", "scene.v2.final..pth", "tiny.pth"]
    record = json.loads((exported / "export.json").read_text())
    assert record["images_left_out"] == [MISSING] and record["store_images_not_in_annotations"] == 1
    assert record["store_gt_regions_not_gt_rows"] == 2 and record["images_without_proposals"] == 2
    assert record["proposals_without_pseudo_label"] == 3
    objectness = official.objectness(str(exported / "object_embedding.pt"), torch.randn(2, 6, odd[
        "clip_full_image_embedding"].shape[1]))
    assert objectness.shape == (2, 6, 1)


def test_class_embeddings_follow_the_labels_of_the_annotation_file(hostile, exported):
    classes = _store_rows(hostile.store).classes
    names = [c["name"] for c in json.loads(hostile.training_file.read_text())["categories"]]
    prompts = official.class_prompts(str(exported / "class_embeddings.pt"), np.arange(len(names))).numpy()
    np.testing.assert_allclose(prompts, np.stack([_unit(classes[n][1]) for n in names]), rtol=REL, atol=1e-6)


def test_the_replay_fails_on_a_missing_dummy_row_or_a_gt_row_too_few(hostile, exported, tmp_path):
    """The replay is strict where the official code is: without these rows it raises, as the official code does."""
    features = tmp_path / "features"
    shutil.copytree(exported / "features", features)
    classes = list(_store_rows(hostile.store).classes)
    images = {image.image_id: image for image in official.load_training_images(
        str(exported / "annotations.json"), (exported / "proposals.pkl").read_bytes(), classes, pickle.loads)}
    odd = torch.load(features / "odd.pth", weights_only=True)
    torch.save({**odd, "proposal_clip_image_embedding": odd["proposal_clip_image_embedding"][:0]},
               features / "odd.pth")
    with pytest.raises(IndexError):
        official.roi_head_inputs(images[3], str(features) + "/")
    first = torch.load(features / "0001.pth", weights_only=True)
    torch.save({**first, "gt_clip_image_embedding": first["gt_clip_image_embedding"][:-1]}, features / "0001.pth")
    with pytest.raises(AssertionError):
        official.roi_head_inputs(images[1], str(features) + "/")


def test_pickle_is_read_by_our_proposal_reader_in_the_file_order(hostile, exported):
    dataset = read_coco(str(exported / "annotations.json"))
    loaded = read_proposals(str(exported / "proposals.pkl"), dataset)
    rows = _store_rows(hostile.store).regions
    first = sorted((r for (i, _), r in rows.items() if i == 1 and r["source"] == "proposal"),
                   key=lambda r: r["region_id"])
    del first[NO_OBJECT_RANK[1]]  # its caption named no object: not exported
    np.testing.assert_array_equal(loaded.for_image(1), np.asarray([list(r["box"]) + [r["proposal_score"]]
                                                                   for r in first], np.float32))
    assert loaded.for_image(3).shape == (0, 5) and loaded.for_image(NO_LABELS).shape == (0, 5)


def test_images_the_store_lacks_stop_the_export_listing_them(hostile, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export-hdovd", str(hostile.store), str(out), "--annotations", str(hostile.training_file)]) == 2
    message = capsys.readouterr().out
    assert "1 images of" in message and f"image {MISSING} (missing.png)" in message
    assert "--restrict-annotations" in message and "failures" in message
    assert not out.exists()  # checked before anything is written


def test_novel_annotations_in_the_file_are_named_image_by_image(hostile, tmp_path, capsys):
    """The full file makes novel boxes GT rows; a strict store has no region for them: the export stops."""
    out = tmp_path / "out"
    assert main(["export-hdovd", str(hostile.store), str(out), "--annotations", str(hostile.full_file),
                 "--restrict-annotations"]) == 2
    message = capsys.readouterr().out
    assert "image 1 (0001.png): the official loader makes 3 GT rows" in message and "annotation 12 (star" in message
    assert "image 2 (scene.v2.final.jpeg): the official loader makes 1 GT rows" in message
    assert "base classes only" in message and not out.exists()


def test_two_images_read_from_one_pth_are_an_error(hostile, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export-hdovd", str(hostile.store), str(out), "--annotations", str(hostile.collision_file),
                 "--restrict-annotations"]) == 2
    message = capsys.readouterr().out
    assert "images 6 (photo.tiff) and 5 (photo.jpeg) would both be read from photo..pth" in message


def test_a_crash_mid_export_leaves_only_complete_files(hostile, tmp_path):
    out = tmp_path / "out"
    (out / "features" / "nolabel.pth").mkdir(parents=True)  # a folder squats one final name: its rename fails
    with pytest.raises(OSError):
        main(["export-hdovd", str(hostile.store), str(out), "--annotations", str(hostile.training_file),
              "--restrict-annotations"])
    left = [p for p in out.rglob("*") if p.is_file()]
    assert left and not [p for p in left if p.name.startswith(TMP_PREFIX)]
    assert not (out / "proposals.pkl").exists()  # written last: its absence says the export is incomplete
    for path in left:
        assert len(torch.load(path, weights_only=True)) == 4  # every .pth under its final name is whole


def test_a_store_without_pseudo_labels_is_refused(tmp_path, capsys):
    store = write_store(tmp_path / "store", shards=1, with_pseudo_labels=False)
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert main(["export-hdovd", str(store), str(tmp_path / "out"), "--annotations", str(annotations)]) == 2
    message = capsys.readouterr().out
    assert "no pseudo_labels table" in message and "proposal_clip_text_embedding" in message
    assert "make pseudo-labels" in message


def test_a_store_with_shards_the_pseudo_labels_stage_did_not_commit_is_refused(tmp_path, capsys):
    store = write_store(tmp_path / "store", shards=2, labelled_shards=1)
    assert main(["export-hdovd", str(store), str(tmp_path / "out"), "--annotations", str(tmp_path / "a.json")]) == 2
    assert "has not committed shards [1] of 2" in capsys.readouterr().out


def test_a_non_strict_store_is_refused(tmp_path, capsys):
    store = write_store(tmp_path / "store", shards=1, strict=False)
    assert main(["export-hdovd", str(store), str(tmp_path / "out"), "--annotations", str(tmp_path / "a.json")]) == 2
    message = capsys.readouterr().out
    assert "dataset.strict = false" in message and "leak novel objects" in message and "dataset.strict=true" in message
