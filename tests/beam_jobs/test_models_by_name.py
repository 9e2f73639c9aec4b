"""extract-features with its CLIP named by hub name, read offline from a cache in the hub's layout
(tests/hub_cache.py): the manifest records the file in the cache, its sha256, repo and commit; the store's CLIP is
found again at that commit after `main` moves on; new weights on `main` mean new shard fingerprints; and a model
missing from the cache stops the job, naming the config key and the cache, before anything is read or written."""
import hashlib

import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from huggingface_hub import constants

from beam_jobs.extract_features import main, run
from beam_jobs.pseudo_labels import resolve_text_clip
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES
from pipelines.pseudo_labels_config import PseudoLabelsConfig
from tests.beam_jobs.sample import make_sample
from tests.hub_cache import add_commit, new_repo_id
from tests.tiny_clip import save_local_dir


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("by_name")
    return root, make_sample(root / "sample", images=3)


def job_argv(sample, clip: str, store) -> list[str]:
    return [f"--set={o}" for o in sample.overrides("unused")] + [f"--set=model.clip={clip}", "--store", str(store)]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprints(store) -> dict[int, str]:
    return {commit.shard: commit.fingerprint for commit in StoreReader(store).table_commits("regions")}


def test_a_hub_clip_is_recorded_pinned_and_new_weights_recompute_every_shard(world):
    root, sample = world
    repo = new_repo_id("clip")
    first = add_commit(repo, save_local_dir(root / "clip-1", seed=1))
    store = root / "store"
    argv = job_argv(sample, f"hf-hub:{repo}", store)
    run(argv, test_pipeline=BeamTestPipeline(argv=[]))
    record = StoreReader(store).manifest.store_clip("store")
    weights = first / "open_clip_model.safetensors"
    assert (record.name, record.checkpoint, record.path) == (f"hf-hub:{repo}", None, str(weights))
    assert (record.repo_id, record.revision, record.sha256) == (repo, first.name, sha256(weights))
    before = fingerprints(store)

    second = add_commit(repo, save_local_dir(root / "clip-2", seed=2))
    # The text side of pseudo-labels embeds with the store's CLIP at the commit that embedded the regions.
    source, _ = resolve_text_clip(PseudoLabelsConfig(), record, str(store))
    assert source.revision == first.name and source.weights_path == str(weights)

    summary = run(argv, test_pipeline=BeamTestPipeline(argv=[]))
    assert summary["shards_computed"] == len(before) and summary["shards_skipped"] == 0
    after = fingerprints(store)
    assert after.keys() == before.keys() and all(after[shard] != before[shard] for shard in before)
    record = StoreReader(store).manifest.stages[EXTRACT_FEATURES].models["clip"]
    assert record.revision == second.name and record.sha256 == sha256(second / "open_clip_model.safetensors")
    assert run(argv, test_pipeline=BeamTestPipeline(argv=[]))["shards_computed"] == 0  # unchanged: all kept


def test_a_clip_missing_from_the_cache_stops_the_job_before_anything_is_read(world, capsys):
    root, sample = world
    absent, store = new_repo_id("absent-clip"), root / "never"
    # Unreadable annotations too: the model error coming first shows the model is checked before any input.
    argv = job_argv(sample, f"hf-hub:{absent}", store) + [f"--set=dataset.annotations={root / 'not-read.json'}"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"model.clip = 'hf-hub:{absent}'" in error and constants.HF_HUB_CACHE in error
    assert "HF_HUB_OFFLINE=1" in error
    assert not store.exists()
