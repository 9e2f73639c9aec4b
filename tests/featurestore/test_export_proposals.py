"""export-proposals on a store the real proposals job wrote: the pickle replayed against HD-OVD's official loader
(tests/featurestore/official_hdovd_loader.py), both files read back by our own proposal reader and by pycocotools."""
from __future__ import annotations

import contextlib
import io
import json
import pickle

import numpy as np
import pytest
from pycocotools.coco import COCO

from featurestore.cli import main
from featurestore.proposals import committed_proposals
from featurestore.reader import StoreReader
from pipelines.coco import read_coco
from pipelines.proposals import read_proposals
from pipelines.safe_pickle import load_data_pickle
from tests.featurestore import official_hdovd_loader as official
from tests.proposal_stage import TOP_K, proposal_world, write_proposal_stage

UNREADABLE = {101, 102, 103}  # the sample's missing, truncated and non-image files


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = proposal_world(tmp_path_factory.mktemp("export_proposals"))
    store = world.root / "store"
    write_proposal_stage(world, store)
    return world, store


@pytest.fixture(scope="module")
def exported(world):
    _, store = world
    out = store.parent / "exported"
    assert main(["export-proposals", str(store), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("unpickle", [pickle.loads, lambda data: load_data_pickle(data, "proposals.pkl")],
                         ids=["plain pickle", "our restricted unpickler"])
def test_the_official_loader_gives_every_image_its_own_proposals(world, exported, unpickle):
    sample_world, store = world
    stored = committed_proposals(StoreReader(store))
    annotations = sample_world.sample.annotations
    infos = {record["id"]: record for record in json.loads(annotations.read_text())["images"]}
    images = official.load_training_images(str(annotations), (exported / "proposals.pkl").read_bytes(),
                                           ["circle", "square", "star", "heart"], unpickle, filter_empty_gt=False)
    assert sorted(image.image_id for image in images) == sorted(infos)  # every image, the unreadable ones too
    for image in images:
        info = infos[image.image_id]
        if image.image_id in UNREADABLE:  # no proposals: LoadProposals makes one [0, 0, 0, 0] box
            np.testing.assert_array_equal(image.proposals, np.zeros((1, 4), np.float32))
            continue
        expected = official._resize(stored[image.image_id][:, :4], info["width"], info["height"])
        np.testing.assert_array_equal(image.proposals, expected)


def test_both_files_read_back_by_our_reader_as_the_stage_holds_them(world, exported):
    sample_world, store = world
    stored = committed_proposals(StoreReader(store))
    dataset = read_coco(str(sample_world.sample.annotations))
    for name in ("proposals.pkl", "proposals.json"):
        read = read_proposals(str(exported / name), dataset)
        assert not read.unknown
        for image_id in dataset.image_ids():
            expected = stored.get(image_id, np.zeros((0, 5), np.float32))
            np.testing.assert_array_equal(read.for_image(image_id), expected)  # exact: xywh in float64 round-trips


def test_the_results_json_is_coco_results_pycocotools_loads(world, exported):
    sample_world, _ = world
    rows = json.loads((exported / "proposals.json").read_text())
    assert len(rows) == 6 * TOP_K and {r["category_id"] for r in rows} == {1}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(sample_world.sample.annotations))
        results = coco.loadRes(str(exported / "proposals.json"))
    assert len(results.getAnnIds()) == len(rows)


def test_top_k_and_an_annotation_file_with_images_the_stage_never_saw(world, tmp_path, capsys):
    sample_world, store = world
    out = tmp_path / "top3"
    assert main(["export-proposals", str(store), str(out), "--top-k", "3"]) == 0
    assert "3 images the stage could not read have none (image ids [101, 102, 103])" in capsys.readouterr().out
    arrays = load_data_pickle((out / "proposals.pkl").read_bytes(), "proposals.pkl")
    assert [len(a) for a in arrays] == [3] * 6 + [0] * 3 and all(a.dtype == np.float32 for a in arrays)
    records = json.loads(sample_world.sample.annotations.read_text())
    records["images"].append({"id": 777, "file_name": "new.png", "width": 50, "height": 50})
    other = tmp_path / "more_images.json"
    other.write_text(json.dumps(records))
    assert main(["export-proposals", str(store), str(tmp_path / "refused"), "--annotations", str(other)]) == 2
    assert "1 images of" in capsys.readouterr().out and not (tmp_path / "refused").exists()


def test_a_store_without_a_proposals_stage_is_refused(tmp_path, capsys):
    assert main(["export-proposals", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert "no store yet" in capsys.readouterr().out


def test_inspect_sql_head_validate_report_and_diff_know_the_table(world, tmp_path, capsys):
    _, store = world
    assert main(["inspect", str(store)]) == 0
    out = capsys.readouterr().out
    assert "proposals" in out and "proposal recall (class-agnostic; novel GT from" in out and "AR@10" in out
    assert main(["sql", str(store), "SELECT count(*) AS n, max(rank) AS top FROM proposals", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 6 * TOP_K, "top": TOP_K - 1}]
    assert main(["head", str(store), "proposals", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)[0]) == {"image_id", "rank", "box", "score"}
    assert main(["validate", str(store)]) == 0
    capsys.readouterr()
    assert main(["report", str(store), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    recall = StoreReader(store).manifest.stages["proposals"].summary["recall"]
    assert "Proposal recall" in page and f"{recall['novel']['AR@10']:.1%}" in page
    assert json.loads((tmp_path / "report" / "report.json").read_text())["proposal_recall"]["sides"] == {
        side: recall[side] for side in ("base", "novel")}
    assert main(["diff", str(store), str(store)]) == 0
