"""extract-features in object-name mode on real Beam (TestPipeline), a tiny random-weight open_clip model and real
files: names land in regions for GT rows only, vocab rows of kind "name" hold the names' text embeddings, changed
names recompute their shard, and a bad names file stops the job before anything is written."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from beam_jobs.extract_features import run
from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from featurestore.validate import validate_store
from vlm.clip import load_clip, resolve_clip
from pipelines.object_names import NamesFileError
from vlm.prompts import text_embeddings
from tests.beam_jobs.sample import CATEGORIES, NOVEL_IDS, make_sample
from tests.tiny_clip import save_local_dir

CATEGORY_NAMES = {c["id"]: c["name"] for c in CATEGORIES}
UNLISTED = 2  # this many base annotations are left out of the names file: they get their category name


def _names_lines(annotations: list[dict]) -> list[dict]:
    """A line per annotation but the first UNLISTED base ones, novel ones included (the job must drop those), plus
    one for an annotation id the annotations do not have. Names: "red <class>, thing" (two synonyms) and "<class>"."""
    base = [a for a in annotations if a["category_id"] not in NOVEL_IDS]
    skipped = {a["id"] for a in base[:UNLISTED]}
    lines = [{"image_id": a["image_id"], "ann_id": a["id"], "bbox": a["bbox"],
              "names": [f"red {CATEGORY_NAMES[a['category_id']]}, thing", CATEGORY_NAMES[a["category_id"]]]}
             for a in annotations if a["id"] not in skipped]
    return lines + [{"image_id": 1, "ann_id": 123456, "bbox": [0, 0, 1, 1], "names": ["ghost"]}]


def _write_lines(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    model_dir = save_local_dir(root / "clip", seed=1)
    sample = make_sample(root / "sample", images=6)
    annotations = json.loads(sample.annotations.read_text())["annotations"]
    names = _write_lines(root / "names.jsonl", _names_lines(annotations))
    argv = [f"--set={o}" for o in sample.overrides(model_dir)] + [
        f"--set=dataset.names={names}", "--set=dataset.object_names=true"]
    summary = run(argv + ["--store", str(root / "store")], test_pipeline=BeamTestPipeline(argv=[]))
    return root, model_dir, annotations, names, argv, summary


def _annotation_of(row: dict, annotations: list[dict]) -> dict:
    """The annotation whose box the GT region is (the sample's boxes lie inside their images, so none is clipped)."""
    for annotation in annotations:
        x, y, w, h = annotation["bbox"]
        if annotation["image_id"] == row["image_id"] and np.allclose(row["box"], [x, y, x + w, y + h], atol=1e-3):
            return annotation
    raise AssertionError(f"no annotation has the box of region {row}")


def test_gt_regions_carry_their_names_and_no_other_region_does(named):
    root, _, annotations, _, _, summary = named
    rows = StoreReader(root / "store").read_table("regions").drop_columns(["embedding"]).to_pylist()
    gt = [row for row in rows if row["source"] == "gt"]
    assert gt and all(row["names"] is None for row in rows if row["source"] != "gt")
    listed = {line["ann_id"] for line in _names_lines(annotations)}
    unlisted = 0
    for row in gt:
        annotation = _annotation_of(row, annotations)
        category = CATEGORY_NAMES[annotation["category_id"]]
        assert annotation["category_id"] not in NOVEL_IDS
        if annotation["id"] in listed:  # "red circle, thing" is two alternatives
            assert row["names"] == [f"red {category}", "thing", category]
        else:  # not in the file: named by its class (dataset.object_names)
            assert row["names"] == [category]
            unlisted += 1
    assert unlisted == UNLISTED
    novel_lines = sum(1 for a in annotations if a["category_id"] in NOVEL_IDS)
    assert summary["object_names"] == {"distinct": 5, "unmatched_lines": novel_lines + 1}
    assert validate_store(root / "store") == []


def test_vocab_has_one_name_row_per_distinct_name_with_its_text_embedding(named):
    root, model_dir, *_ = named
    vocab = StoreReader(root / "store").read_table("vocab")
    rows = vocab.drop_columns(["embedding"]).to_pylist()
    names = [row for row in rows if row["kind"] == "name"]
    # Only base objects are named (circle, square): the novel boxes' names ("red star") and the unknown annotation
    # id's "ghost" never arrive.
    assert [row["name"] for row in names] == ["circle", "red circle", "red square", "square", "thing"]
    assert all(row["category_id"] is None and row["split"] is None and row["prompts"] == "single" for row in names)
    assert [row["name"] for row in rows if row["kind"] == "class"] == ["circle", "square", "star", "heart"]
    clip = load_clip(resolve_clip(f"local-dir:{model_dir}", None, None))
    expected = text_embeddings(clip.model, clip.tokenizer, [row["name"] for row in names], "single")
    stored = embeddings_to_numpy(vocab.column("embedding")).astype(np.float32)
    name_rows = [i for i, row in enumerate(rows) if row["kind"] == "name"]
    np.testing.assert_allclose(stored[name_rows], expected, atol=2e-3)  # float16 storage
    circle_class = next(i for i, row in enumerate(rows) if row["kind"] == "class" and row["name"] == "circle")
    circle_name = next(i for i, row in enumerate(rows) if row["kind"] == "name" and row["name"] == "circle")
    # Same model, same prompts; embedded in batches of different sizes, which may take other float32 kernels, so
    # the two may land one float16 step apart (4.9e-4 below 1.0).
    np.testing.assert_allclose(stored[circle_class], stored[circle_name], rtol=0, atol=1e-3)


def test_changed_names_recompute_only_their_shards(named, tmp_path):
    root, _, _, names, argv, _ = named
    store = tmp_path / "store"
    shutil.copytree(root / "store", store)
    assert run(argv + ["--store", str(store)], test_pipeline=BeamTestPipeline(argv=[]))["shards_computed"] == 0
    # The same file with new contents for images 1-3 (shard 0 at shard_size 3): the plans, and so the fingerprints,
    # carry the names themselves, not only the path.
    original = names.read_text()
    lines = [json.loads(line) for line in original.splitlines()]
    for line in lines:
        if line["image_id"] <= 3:
            line["names"] = [name.replace("red", "blue") for name in line["names"]]
    try:
        _write_lines(names, lines)
        summary = run(argv + ["--store", str(store)], test_pipeline=BeamTestPipeline(argv=[]))
    finally:
        names.write_text(original)
    assert (summary["shards_computed"], summary["shards_skipped"]) == (1, 1)
    stored = {name for row in StoreReader(store).rows("regions", ["image_id", "names"]) for name in row["names"] or ()
              if row["image_id"] <= 3}
    assert "blue square" in stored and "red square" not in stored


def test_a_bad_names_file_stops_the_job_before_anything_is_written(named, tmp_path):
    *_, argv, _ = named
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image_id": 1, "ann_id": 12, "names": ["square"]}\n{"image_id": 2, "ann_id": 20, "names": 3}\n')
    store = tmp_path / "never"
    with pytest.raises(NamesFileError, match=re.escape(f"{bad}, line 2: names must be a list of strings")):
        run(argv + [f"--set=dataset.names={bad}", "--store", str(store)])
    assert not store.exists()
