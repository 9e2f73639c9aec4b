"""The job's side of a damaged or shared store: the resume recomputes exactly the shards whose files no longer
match their records (flipped bytes in a regions Parquet file and in a WebDataset tar), whose record was deleted or
damaged; it rebuilds a damaged manifest.json, which every tool otherwise names; and a second job on a store being
written refuses (exit 2) naming the first, whose store ends as it alone would have written it."""
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from beam_jobs.extract_features import main, run
from featurestore.cli import main as featurestore
from featurestore.reader import StoreReader
from featurestore.validate import check_store, validate_store
from tests.beam_jobs.sample import make_sample
from tests.featurestore.store_factory import committed_file
from tests.tiny_clip import save_local_dir

REPO = Path(__file__).resolve().parents[2]
MODEL_OUTPUTS = ["embedding", "embedding_norm"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A clean three-shard store of nine images, and the arguments that wrote it."""
    root = tmp_path_factory.mktemp("damaged")
    sample = make_sample(root / "sample", images=9)
    argv = [f"--set={o}" for o in sample.overrides(save_local_dir(root / "clip", seed=6), )] + [
        "--set=runtime.max_failure_rate=2.0"]
    run(argv + ["--store", str(root / "clean")], test_pipeline=TestPipeline())
    return root, argv


def copy_of_clean(world, tmp_path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(world[0] / "clean", store)
    return store


def records(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((store / "_commits" / "extract_features").glob("*.json"))}


def assert_equals_clean(store: Path, world) -> None:
    got, clean = StoreReader(store), StoreReader(world[0] / "clean")
    for table, keys in (("images", ["image_id"]), ("regions", ["image_id", "region_id"])):
        order = [(key, "ascending") for key in keys]
        assert got.read_table(table).sort_by(order).drop_columns(MODEL_OUTPUTS).equals(
            clean.read_table(table).sort_by(order).drop_columns(MODEL_OUTPUTS))
    assert validate_store(store) == []


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_resume_recomputes_exactly_the_damaged_shards(world, tmp_path, caplog):
    store = copy_of_clean(world, tmp_path)
    flip(committed_file(store, "regions", 1), committed_file(store, "regions", 1).stat().st_size // 2)
    flip(committed_file(store, "wds", 2), 700)
    check = check_store(store)
    assert {stage: sorted(shards) for stage, shards in check.damaged.items()} == {"extract_features": [1, 2]}
    assert any("shards 1, 2 of extract_features" in line and "python -m beam_jobs.extract_features" in line
               for line in check.repairs(str(store)))
    kept = records(store)["00000.json"]
    with caplog.at_level(logging.WARNING, logger="beam_jobs.sharded_stage"):
        summary = run(world[1] + ["--store", str(store)])
    assert summary["shards_computed"] == 2 and summary["shards_skipped"] == 1
    assert sum("is damaged" in r.getMessage() for r in caplog.records) == 2
    assert records(store)["00000.json"] == kept  # the intact shard untouched
    assert_equals_clean(store, world)


def test_a_deleted_or_damaged_record_is_warned_about_and_recomputed(world, tmp_path, caplog):
    store = copy_of_clean(world, tmp_path)
    (store / "_commits/extract_features/00001.json").unlink()
    with caplog.at_level(logging.WARNING, logger="featurestore.reader"):
        assert StoreReader(store).shards("regions") == [0, 2]
    assert any("lists 1 shard(s) of stage extract_features that have no commit record (00001)" in r.getMessage()
               for r in caplog.records)
    assert any("lists shard 00001 that has no commit record" in p for p in validate_store(store))
    record = store / "_commits/extract_features/00002.json"
    record.write_text(record.read_text()[:40])  # truncated
    assert featurestore(["inspect", str(store)]) == 2
    summary = run(world[1] + ["--store", str(store)])
    assert summary["shards_computed"] == 2 and summary["shards_skipped"] == 1
    assert_equals_clean(store, world)


def test_a_truncated_manifest_is_named_and_rebuilt(world, tmp_path, capsys):
    store = copy_of_clean(world, tmp_path)
    manifest = store / "manifest.json"
    whole = json.loads(manifest.read_text())
    manifest.write_text(manifest.read_text()[:200])
    assert featurestore(["inspect", str(store)]) == 2
    said = capsys.readouterr().out
    assert f"{manifest} is damaged" in said and f"python -m featurestore validate --repair {store}" in said
    assert featurestore(["validate", str(store), "--repair"]) == 0
    rebuilt = json.loads(manifest.read_text())["stages"]["extract_features"]
    assert rebuilt["shards"] == whole["stages"]["extract_features"]["shards"]
    assert rebuilt["models"] == whole["stages"]["extract_features"]["models"]
    assert (store / "manifest.json.damaged").stat().st_size == 200  # the damaged bytes, kept beside it
    manifest.write_text("{")  # damaged again: this time the job's resume rebuilds it
    summary = run(world[1] + ["--store", str(store)])
    assert summary["shards_computed"] == 0 and summary["shards_skipped"] == 3
    assert json.loads(manifest.read_text())["stages"]["extract_features"]["config"] == \
        whole["stages"]["extract_features"]["config"]
    assert_equals_clean(store, world)


@pytest.mark.slow
def test_a_second_job_on_a_store_being_written_refuses(world, tmp_path, capsys):
    store, go = tmp_path / "store", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-m", "tests.beam_jobs.pause_after_commit", str(go),
                              "extract_features", *world[1], "--store", str(store)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert first.stdout.readline().strip() == "PAUSED"  # holding the lock, one shard committed
        assert main(world[1] + ["--store", str(store), "--set=crop.mode=context"]) == 2
        refusal = capsys.readouterr().err
        assert "is locked by another writer" in refusal and f"pid {first.pid}" in refusal
        assert "pause_after_commit.py" in refusal and "kill -9 included" in refusal
        go.touch()
        assert first.stdout.read().strip().endswith("DONE") and first.wait(timeout=300) == 0
    finally:
        go.touch()
        first.kill()
    assert_equals_clean(store, world)  # the first job's config and rows, nothing of the refused one
    assert json.loads((store / "manifest.json").read_text())["stages"]["extract_features"]["config"]["crop"][
        "mode"] == "square"
