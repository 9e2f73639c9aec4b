"""A re-commit cannot tear: extract-features re-commits a store under a changed crop mode and is SIGKILLed at every
step of the re-commit of one shard (tests/beam_jobs/kill_during_recommit.py). At each kill, every reader sees each
shard whole, either as the old run or as the new run wrote it, with the record that belongs to those rows; the
resume then ends equal to a clean run of the new config, with nothing left over."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from beam_jobs.extract_features import run
from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from featurestore.sql import connect
from featurestore.validate import validate_store
from tests.beam_jobs.kill_during_recommit import STEPS_SEEN
from tests.beam_jobs.sample import make_sample
from tests.tiny_clip import save_local_dir

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a job process killed at each step
KILLED_SHARD = 1
# The commit of an extract-features shard: 5 files (images, regions, failures, wds, stats) renamed into place, the
# record renamed over the old one, the 5 old files removed; step 11 is right after the commit returned.
STEPS = 12
MODEL_OUTPUTS = ["embedding", "embedding_norm"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommit")
    model_dir = save_local_dir(root / "clip", seed=5)
    sample = make_sample(root / "sample", images=6)
    base = [f"--set={o}" for o in sample.overrides(model_dir)] + ["--set=runtime.max_failure_rate=2.0"]
    old = base + ["--set=crop.mode=square"]
    new = base + ["--set=crop.mode=context"]
    run(old + ["--store", str(root / "old")], test_pipeline=TestPipeline())
    run(new + ["--store", str(root / "new")], test_pipeline=TestPipeline())
    return root, new, StoreReader(root / "old"), StoreReader(root / "new")


def shard_rows(reader: StoreReader, shard: int) -> dict:
    """Everything a reader sees of one shard: its tables, its WebDataset samples and its stats."""
    return {"images": reader.read_shard("images", shard), "regions": reader.read_shard("regions", shard),
            "wds": [(s["__key__"], [{k: v for k, v in region.items() if k not in MODEL_OUTPUTS}
                                    for region in s["json"]["regions"]]) for s in reader.wds_samples([shard])],
            "stats": {k: v for k, v in reader.shard_stats("extract_features", shard).items() if "second" not in k},
            "fingerprint": next(c.fingerprint for c in reader.commits
                                if c.stage == "extract_features" and c.shard == shard)}


def same_shard(got: dict, expected: dict) -> bool:
    """The same rows, samples, stats and record fingerprint; model outputs to float tolerance (another run batches
    crops differently)."""
    for table in ("images", "regions"):
        a, b = got[table], expected[table]
        if a.num_rows != b.num_rows or not a.drop_columns(MODEL_OUTPUTS).equals(b.drop_columns(MODEL_OUTPUTS)):
            return False
        if not np.allclose(embeddings_to_numpy(a.column("embedding")).astype(np.float32),
                           embeddings_to_numpy(b.column("embedding")).astype(np.float32), atol=2e-3):
            return False
    return all(got[key] == expected[key] for key in ("wds", "stats", "fingerprint"))


@pytest.mark.parametrize("step", range(STEPS))
def test_a_kill_at_any_step_of_a_recommit_leaves_whole_shards_and_the_resume_ends_clean(world, tmp_path, step):
    root, new_argv, old, new = world
    store = tmp_path / "store"
    shutil.copytree(root / "old", store)
    killed = subprocess.run([sys.executable, "-m", "tests.beam_jobs.kill_during_recommit", str(step),
                             str(KILLED_SHARD), *new_argv, "--store", str(store)], cwd=REPO, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    if step == STEPS - 1:
        assert f"{STEPS_SEEN} {STEPS - 1}" in killed.stdout  # the steps counted are the steps of the commit
    reader = StoreReader(store)
    assert reader.shards("regions") == [0, 1]
    for shard in (0, 1):
        seen = shard_rows(reader, shard)
        assert same_shard(seen, shard_rows(old, shard)) or same_shard(seen, shard_rows(new, shard)), (step, shard)
    # Up to the record's rename (step 5) the killed shard is the old one, from then on the new one.
    assert same_shard(shard_rows(reader, KILLED_SHARD), shard_rows(old if step <= 5 else new, KILLED_SHARD))
    query = "SELECT count(*) FROM regions WHERE crop_mode = 'context'"
    (contexts,) = connect(store).execute(query).fetchone()  # DuckDB over the committed files sees the same
    assert contexts == reader.read_table("regions").column("crop_mode").to_pylist().count("context")
    assert all(" file of an interrupted write" in p or "uncommitted file" in p for p in validate_store(store))
    summary = run(new_argv + ["--store", str(store)])
    assert summary["shards_computed"] == (2 if step <= 5 else 1) - (1 if _shard_0_done(reader, new) else 0)
    resumed = StoreReader(store)
    for shard in (0, 1):
        assert same_shard(shard_rows(resumed, shard), shard_rows(new, shard)), shard
    assert validate_store(store) == []  # the resume collected the killed attempt's files


def _shard_0_done(reader: StoreReader, new: StoreReader) -> bool:
    """Whether the killed run had re-committed shard 0 (the runner orders the two shards' commits as it likes)."""
    return shard_rows(reader, 0)["fingerprint"] == shard_rows(new, 0)["fingerprint"]
