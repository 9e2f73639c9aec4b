"""Both Beam jobs scaled out: into an S3 bucket (moto's server on loopback), killed with SIGKILL mid-run and
resumed there, and on the other runners (multi-processing, Prism, Flink), each store compared table by table with
the one the in-process runner writes to a local folder."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from beam_jobs import extract_features, pseudo_labels
from featurestore.cli import main
from featurestore.gc import collect_garbage
from featurestore.reader import StoreReader
from featurestore.validate import validate_store
from tests.beam_jobs.two_jobs import assert_same_tables, make_world, run_both, store_tables

pytestmark = pytest.mark.slow  # processes or a server: `make test` runs it, `make test-fast` does not

REPO = Path(__file__).resolve().parents[2]


# Session scope: the tests that need a runner built first run at the end of the session (tests/conftest.py), and
# the reference must not be computed twice.
@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("scale-out"))


@pytest.fixture(scope="session")
def reference(world):
    """Both jobs on the in-process runner into a local folder: what every other store must equal."""
    store = world.root / "reference"
    run_both(world, store)
    assert validate_store(store) == []
    return store_tables(store)


def _killed(world, job: str, argv: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tests.beam_jobs.crash_after_commit", "--sigkill", job, *argv],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == -9, done.stderr[-3000:]
    return done


def test_both_jobs_into_s3_equal_the_local_store(world, reference, s3_bucket, capsys):
    store = f"{s3_bucket}/store"
    extracted, labelled = run_both(world, store)
    assert extracted["shards_computed"] == 3 and labelled["shards_computed"] == 3
    assert validate_store(store) == []
    assert_same_tables(store_tables(store), reference)
    query = "SELECT label, count(*) AS n FROM pseudo_labels GROUP BY 1 ORDER BY 1"
    assert main(["sql", store, query, "--json"]) == 0
    from_s3 = capsys.readouterr().out
    assert main(["sql", str(world.root / "reference"), query, "--json"]) == 0
    assert from_s3 == capsys.readouterr().out


def test_kill_9_mid_run_on_s3_resumes_to_the_same_store(world, reference, s3_bucket):
    store = f"{s3_bucket}/store"
    _killed(world, "extract_features", world.extract_argv(store))
    assert len(StoreReader(store).shards("regions")) == 1  # the first committed shard, nothing else visible
    extracted = extract_features.run(world.extract_argv(store))
    assert extracted["shards_skipped"] == 1 and extracted["shards_computed"] == 2
    _killed(world, "pseudo_labels", world.labels_argv(store))
    assert len(StoreReader(store).shards("pseudo_labels")) == 1
    labelled = pseudo_labels.run(world.labels_argv(store))
    assert labelled["shards_skipped"] == 1 and labelled["shards_computed"] == 2
    collect_garbage(store, min_age_seconds=0)  # whatever the killed attempts left unreferenced
    assert validate_store(store) == []
    assert_same_tables(store_tables(store), reference)


def test_multi_processing_mode_writes_the_same_tables(world, reference, tmp_path):
    store = tmp_path / "multi"
    run_both(world, store, ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                            "--direct_num_workers=2"])
    assert_same_tables(store_tables(store), reference)


@pytest.mark.needs_runner("PrismRunner")
def test_prism_with_worker_processes_writes_the_same_tables_to_s3(world, reference, s3_bucket, runner_flags, caplog):
    store = f"{s3_bucket}/prism"
    with caplog.at_level(logging.INFO, logger="beam_jobs.sharded_stage"):
        run_both(world, store, runner_flags("PrismRunner"))
    # Not the DirectRunner: every pending shard in one pipeline (no waves).
    assert "extract_features: pipeline 1 of 1: shards [0, 1, 2]" in caplog.text
    assert validate_store(store) == []
    assert_same_tables(store_tables(store), reference)


@pytest.mark.needs_runner("FlinkRunner")
def test_flink_local_cluster_writes_the_same_tables(world, reference, tmp_path, runner_flags):
    store = tmp_path / "flink"
    run_both(world, store, runner_flags("FlinkRunner"))
    assert validate_store(store) == []
    assert_same_tables(store_tables(store), reference)
