"""extract-features reading the store's own proposals stage (dataset.proposals: store): the same rows as from the
stage exported to a COCO-results file, a fingerprint that follows the proposals it read, and clear refusals of a
stage that is missing, unfinished or cut into other shards."""
import numpy as np
import pytest

from beam_jobs.extract_features import main as extract_main
from beam_jobs.extract_features import run as extract
from featurestore.arrow import embeddings_to_numpy
from featurestore.atomic import sha256_file
from featurestore.cli import main as featurestore_main
from featurestore.manifest import update_stage
from featurestore.reader import StoreReader
from featurestore.validate import validate_store
from tests.proposal_stage import proposal_world, write_proposal_stage
from tests.tiny_clip import save_local_dir
from tests.tiny_proposer import save_tiny_proposer

EMBEDDINGS = ["embedding", "embedding_norm"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = proposal_world(tmp_path_factory.mktemp("extract_from_proposals"))
    return world, save_local_dir(world.root / "clip", seed=1)


def _extract_argv(world, store, proposals: str, *extra: str) -> list[str]:
    proposal_world_, clip = world
    return ([f"--set={o}" for o in proposal_world_.sample.overrides(clip)]
            + ["--store", str(store), f"--set=dataset.proposals={proposals}", "--set=runtime.max_failure_rate=2.0",
               *extra])


@pytest.fixture(scope="module")
def from_stage(world):
    """A store whose proposals stage feeds its extract-features stage."""
    store = world[0].root / "from_stage"
    write_proposal_stage(world[0], store)
    extract(_extract_argv(world, store, "store"))
    return store


def _tables(store) -> dict:
    reader = StoreReader(store)
    return {"images": reader.read_table("images").sort_by("image_id"),
            "regions": reader.read_table("regions").sort_by([("image_id", "ascending"), ("region_id", "ascending")])}


def test_extract_from_the_stage_equals_extract_from_the_exported_results_file(world, from_stage, tmp_path):
    assert featurestore_main(["export-proposals", str(from_stage), str(tmp_path / "exported")]) == 0
    from_file = tmp_path / "from_file"
    extract(_extract_argv(world, from_file, str(tmp_path / "exported" / "proposals.json")))
    got, expected = _tables(from_stage), _tables(from_file)
    assert "proposal" in got["regions"].column("source").to_pylist()
    for name in got:
        assert got[name].drop_columns(EMBEDDINGS).equals(expected[name].drop_columns(EMBEDDINGS))
        np.testing.assert_allclose(embeddings_to_numpy(got[name].column("embedding")).astype(np.float32),
                                   embeddings_to_numpy(expected[name].column("embedding")).astype(np.float32),
                                   atol=2e-3)
    failures = [{(r["image_id"], r["kind"]) for r in StoreReader(s).read_table("failures").to_pylist()
                 if r["stage"] == "extract_features"} for s in (from_stage, from_file)]
    assert failures[0] == failures[1]
    models = StoreReader(from_stage).manifest.stages["extract_features"].models
    assert models["proposer"].sha256 == sha256_file(world[0].checkpoint)  # which network proposed, in provenance
    assert validate_store(from_stage) == []


def test_the_extract_fingerprint_follows_the_proposals_it_read(world, tmp_path):
    store = tmp_path / "store"
    write_proposal_stage(world[0], store)
    argv = _extract_argv(world, store, "store")
    assert extract(argv)["shards_computed"] == 3
    assert extract(argv)["shards_computed"] == 0
    other = save_tiny_proposer(tmp_path / "other.pt", seed=2)
    write_proposal_stage(world[0], store, f"--set=proposer.checkpoint={other}")
    # Other proposals, other planned regions: shards 0 and 1 are recomputed; shard 2 holds only the three unreadable
    # images, which have proposals from neither network, so its rows cannot change and it is kept.
    assert extract(argv)["shards_computed"] == 2


def test_a_missing_unfinished_or_differently_cut_stage_is_refused_before_any_work(world, from_stage, tmp_path,
                                                                                  capsys):
    assert extract_main(_extract_argv(world, tmp_path / "new", "store")) == 2
    assert "run make proposals" in capsys.readouterr().err and not (tmp_path / "new").exists()
    records = sorted(p.read_text() for p in (from_stage / "_commits" / "extract_features").glob("*.json"))
    assert extract_main(_extract_argv(world, from_stage, "store", "--set=shard_size=2")) == 2
    error = capsys.readouterr().err
    assert "cut its images into other shards" in error and "dataset.proposals, shard_size" in error
    assert sorted(p.read_text() for p in (from_stage / "_commits" / "extract_features").glob("*.json")) == records
    stage = StoreReader(from_stage).manifest.stages["proposals"]
    update_stage(from_stage, "proposals", started_at=stage.finished_at + 1)  # a later run that never finished
    try:
        assert extract_main(_extract_argv(world, from_stage, "store")) == 2
        assert "did not finish" in capsys.readouterr().err
    finally:
        update_stage(from_stage, "proposals", started_at=stage.started_at)


def test_validate_names_a_proposals_stage_cut_into_other_shards(world, tmp_path):
    store = tmp_path / "store"
    write_proposal_stage(world[0], store)  # shards of 3 images
    extract(_extract_argv(world, store, str(world[0].sample.proposals), "--set=shard_size=2"))
    problems = validate_store(store)
    assert problems and all("different shards" in p for p in problems)
