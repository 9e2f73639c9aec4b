"""--retry-failed on both jobs, for real: after the user fixes the inputs, only the shards with failure rows are
recomputed, the others keep their commit records byte for byte, and the result equals a store computed from scratch
over the fixed inputs. Downstream, the pseudo-labels fingerprint notices a regions shard whose file changed."""
import json

import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from PIL import Image

from beam_jobs import extract_features, pseudo_labels
from beam_jobs.sharded_stage import shards_with_failures
from featurestore.cli import main as featurestore
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES, PSEUDO_LABELS
from featurestore.writer import ShardWriter
from tests.beam_jobs.sample import make_sample
from tests.pseudo_label_store import write_given_captions, write_label_store
from tests.tiny_clip import save_local_dir
from tests.tiny_teachers import CLIP_DIM

IMAGE_FAILURES = {"missing", "truncated", "not_an_image"}  # what fixing the files repairs


def commit_records(store, stage: str) -> dict[int, str]:
    return {int(p.stem): p.read_text() for p in (store / "_commits" / stage).glob("*.json")}


def failure_kinds(store, stage: str) -> set[str]:
    return {f["kind"] for f in StoreReader(store).read_table("failures").to_pylist() if f["stage"] == stage}


def fix_images(sample) -> None:
    """What a user does after reading the failures table: restore the missing, truncated and non-image files at
    the sizes the annotations give."""
    for name, size in (("missing.png", 50), ("truncated.jpg", 60), ("notes.png", 50)):
        Image.fromarray(np.full((size, size, 3), 120, dtype=np.uint8)).save(sample.image_root / name)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("retry")
    return root, save_local_dir(root / "clip", seed=1), make_sample(root / "sample", images=6, bad_inputs=True)


def test_extract_features_retries_only_the_shards_with_failures(world):
    root, model_dir, sample = world
    store = root / "store"

    def run(store, *extra):
        argv = [f"--set={o}" for o in sample.overrides(model_dir)] + [
            "--store", str(store), "--set=runtime.max_failure_rate=2.0", *extra]
        return extract_features.run(argv, test_pipeline=BeamTestPipeline())

    assert run(store)["shards_computed"] == 3
    # shard_size 3: images 1-3 (bad boxes), 4-6 (clean), 101-103 (missing, truncated, not an image; orphan proposals)
    failed = shards_with_failures(str(store), EXTRACT_FEATURES)
    assert sorted(failed) == [0, 2] and IMAGE_FAILURES <= failure_kinds(store, EXTRACT_FEATURES)
    before = commit_records(store, EXTRACT_FEATURES)
    fix_images(sample)
    # Image bytes are in no fingerprint: a plain rerun keeps every shard, failures included.
    assert run(store)["shards_computed"] == 0 and commit_records(store, EXTRACT_FEATURES) == before
    summary = run(store, "--retry-failed")
    assert (summary["shards_computed"], summary["shards_skipped"]) == (2, 1)
    after = commit_records(store, EXTRACT_FEATURES)
    assert after[1] == before[1] and after[0] != before[0] and after[2] != before[2]
    assert not IMAGE_FAILURES & failure_kinds(store, EXTRACT_FEATURES)
    assert {101, 102, 103} <= set(StoreReader(store).read_table("images").column("image_id").to_pylist())
    # The retried store is the store a run from scratch over the fixed inputs writes.
    assert run(root / "fresh")["shards_computed"] == 3
    assert featurestore(["diff", str(store), str(root / "fresh")]) == 0


def test_pseudo_labels_retries_failed_shards_and_follows_changed_regions(tmp_path):
    store = write_label_store(tmp_path, null_embedding={(100, 2)})  # shard 0 has a box with no usable embedding
    captions = {(i, r): "a red star on a wall." for ids in store.image_ids for i in ids for r in (1, 2, 3)}
    path = write_given_captions(tmp_path / "captions.jsonl", captions)

    def run(*extra):
        argv = ["--store", str(store.root), "--set", "captioner.name=given", "--set", f"captioner.given.path={path}",
                "--set", "runtime.device=cpu", "--set", "runtime.max_failure_rate=1.0", *extra]
        return pseudo_labels.run(argv, test_pipeline=BeamTestPipeline())

    assert run()["shards_computed"] == 2
    assert shards_with_failures(str(store.root), PSEUDO_LABELS) == {0: 1}
    before = commit_records(store.root, PSEUDO_LABELS)
    summary = run("--retry-failed")
    after = commit_records(store.root, PSEUDO_LABELS)
    assert (summary["shards_computed"], summary["shards_skipped"]) == (1, 1)
    assert after[1] == before[1] and json.loads(after[0])["committed_at"] > json.loads(before[0])["committed_at"]
    # Region (100, 2) gets its embedding back, in a shard recommitted with the same extract fingerprint (as
    # extract-features --retry-failed does): the pseudo-labels fingerprint covers the regions file, so a plain
    # rerun recomputes that shard, and only it.
    reader = StoreReader(store.root)
    regions = reader.read_shard("regions", 0)
    embeddings = regions.column("embedding").to_pylist()
    row = next(i for i, (image, region) in enumerate(zip(regions.column("image_id").to_pylist(),
                                                         regions.column("region_id").to_pylist()))
               if (image, region) == (100, 2))
    embeddings[row] = store.word_embeddings["heart"].astype(np.float16).tolist()
    fixed = regions.set_column(regions.schema.get_field_index("embedding"), "embedding",
                               pa.array(embeddings, type=regions.schema.field("embedding").type))
    images = reader.read_shard("images", 0)
    writer = ShardWriter(store.root, EXTRACT_FEATURES, CLIP_DIM)
    writer.forget_shards(keep={1})  # as --retry-failed does before it recommits a shard with the same fingerprint
    writer.commit(0, {"images": images, "regions": fixed}, fingerprint="extract-0", with_wds=False)
    summary = run()
    assert (summary["shards_computed"], summary["shards_skipped"], summary["failures"]) == (1, 1, 0)
    labels = {(r["image_id"], r["region_id"]): r["label"] for r in
              StoreReader(store.root).read_table("pseudo_labels").to_pylist()}
    assert len(labels) == 3 * 4 and (100, 2) in labels  # every pseudo box labelled, the fixed one too
