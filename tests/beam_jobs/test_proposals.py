"""The proposals job on real Beam (TestPipeline, the DirectRunner, a killed subprocess), a tiny proposal network with
random weights saved as a training run saves it, and real image files; checked against the network run directly on
each decoded image."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from PIL import Image

from beam_jobs.proposals import main, run
from beam_jobs.sharded_stage import FailureRateExceeded
from featurestore.atomic import sha256_file
from featurestore.proposals import committed_proposals
from featurestore.reader import StoreReader
from pipelines.extract_config import ExtractFeaturesConfig
from pipelines.extract_plan import plan_dataset
from pipelines.proposals_config import ProposalsConfig
from pipelines.sharding import build_shard_tasks
from schemas.config import load_config
from tests.proposal_stage import SHARD_SIZE, TOP_K, proposal_world, write_proposal_stage
from tests.tiny_proposer import save_tiny_proposer
from trainers.proposer.config import ProposalOutputConfig
from trainers.proposer.inference import ProposalGenerator

REPO = Path(__file__).resolve().parents[2]
BAD_KINDS = {"missing": 1, "truncated": 1, "not_an_image": 1}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return proposal_world(tmp_path_factory.mktemp("proposals"))


@pytest.fixture(scope="module")
def clean_store(world):
    """One run over the sample with its three unreadable images; the default failure rate fails it at the end."""
    store = world.root / "clean"
    argv = world.argv(store)
    with pytest.raises(FailureRateExceeded, match="'failures' table"):
        run(argv, test_pipeline=BeamTestPipeline(argv=[]))
    return store


def _stage(store: Path) -> dict[int, np.ndarray]:
    return committed_proposals(StoreReader(store))


def test_rows_are_the_networks_top_k_on_each_image_best_first(world, clean_store):
    reader = StoreReader(clean_store)
    table = reader.read_table("proposals")
    assert table.column_names == ["image_id", "rank", "box", "score"]
    generator = ProposalGenerator.from_checkpoint(world.checkpoint, ProposalOutputConfig(top_k=TOP_K))
    stored = _stage(clean_store)
    assert sorted(stored) == [1, 2, 3, 4, 5, 6]
    for image_id, array in stored.items():
        with Image.open(world.sample.image_root / f"{image_id:04d}.png") as image:
            pixels = np.array(image.convert("RGB"))
        (alone,) = generator([pixels])  # the image in a forward of its own
        assert array.shape == (TOP_K, 5)
        np.testing.assert_allclose(array, alone, rtol=1e-5, atol=1e-4)
        assert np.all(np.diff(array[:, 4]) <= 0)
        assert np.all(array[:, :2] >= 0) and np.all(array[:, 2] <= pixels.shape[1] + 1e-3)
    rows = table.to_pylist()
    for image_id in stored:
        assert [r["rank"] for r in rows if r["image_id"] == image_id] == list(range(TOP_K))


def test_an_unreadable_image_is_a_failure_row_and_the_others_are_rows(clean_store):
    reader = StoreReader(clean_store)
    failures = reader.read_table("failures").to_pylist()
    assert {(f["image_id"], f["kind"], f["file_name"]) for f in failures} == {
        (101, "missing", "missing.png"), (102, "truncated", "truncated.jpg"), (103, "not_an_image", "notes.png")}
    assert {f["stage"] for f in failures} == {"proposals"}
    summary = reader.manifest.stages["proposals"].summary
    assert summary["failures_by_kind"] == BAD_KINDS
    assert (summary["input_images"], summary["images"], summary["proposals"]) == (9, 6, 6 * TOP_K)


def test_shards_hold_the_images_of_extract_features_input_shards(world, clean_store):
    sample = world.sample
    extract = load_config(ExtractFeaturesConfig, None, [
        f"dataset.annotations={sample.annotations}", f"dataset.split={sample.split}", "dataset.proposals=",
        f"shard_size={SHARD_SIZE}"])
    planned = plan_dataset(extract)
    extract_shards = {task.shard: task.image_ids for task in build_shard_tasks(planned.plans, [], SHARD_SIZE, "", "")}
    reader = StoreReader(clean_store)
    for shard, image_ids in extract_shards.items():
        assert reader.shard_stats("proposals", shard)["image_ids"] == image_ids
        held = set(reader.read_shard("proposals", shard, ["image_id"]).column("image_id").to_pylist())
        held |= set(reader.read_shard("failures", shard, ["image_id"]).column("image_id").to_pylist())
        assert held == set(image_ids)


def test_the_manifest_records_the_checkpoint_and_the_recall(world, clean_store):
    record = StoreReader(clean_store).manifest.stages["proposals"]
    proposer = record.models["proposer"]
    assert proposer.sha256 == sha256_file(world.checkpoint)
    assert proposer.path == str(world.checkpoint) and "objectness centerness" in proposer.name
    assert record.embedding_dim is None
    recall = record.summary["recall"]
    assert recall["images"] == {"base": 9, "novel": 9}  # unreadable images count, as finding nothing
    for side in ("base", "novel"):
        assert set(recall[side]) == {"AR@5", "AR@10", "AR@100", "R50@5", "R50@10", "R50@100", "num_gt"}
        assert 0.0 <= recall[side]["AR@5"] <= recall[side]["AR@10"] <= 1.0
    assert recall["base"]["num_gt"] > 0 and recall["novel"]["num_gt"] > 0


def test_resume_skips_current_shards_and_a_changed_checkpoint_or_output_recomputes(world, tmp_path):
    store = tmp_path / "store"
    assert write_proposal_stage(world, store)["shards_computed"] == 3
    before = _stage(store)
    again = write_proposal_stage(world, store, "--set=recall.max_dets=[1,5]", "--set=runtime.max_batch_size=2")
    assert again["shards_computed"] == 0 and set(again["recall"]["base"]) >= {"AR@1", "R50@1"}
    other = save_tiny_proposer(tmp_path / "other.pt", seed=1)
    changed = write_proposal_stage(world, store, f"--set=proposer.checkpoint={other}")
    assert changed["shards_computed"] == 3
    assert StoreReader(store).manifest.stages["proposals"].models["proposer"].sha256 == sha256_file(other)
    assert any(not np.allclose(before[i], array) for i, array in _stage(store).items())
    fewer = write_proposal_stage(world, store, f"--set=proposer.checkpoint={other}", "--set=output.top_k=3")
    assert fewer["shards_computed"] == 3 and {len(a) for a in _stage(store).values()} == {3}


def test_a_missing_or_foreign_checkpoint_is_an_error_naming_the_key_before_any_work(world, tmp_path, capsys):
    store = tmp_path / "never"
    assert main(world.argv(store, f"--set=proposer.checkpoint={tmp_path / 'nowhere.pt'}")) == 2
    assert "nowhere.pt (config key proposer.checkpoint)" in capsys.readouterr().err
    foreign = tmp_path / "hdovd.pt"  # a training run's checkpoint, of another method
    torch.save({"detector": {"w": torch.zeros(1)}, "config": {"method": "hdovd", "hdovd": {}}}, foreign)
    assert main(world.argv(store, f"--set=proposer.checkpoint={foreign}")) == 2
    assert "hdovd.pt (config key proposer.checkpoint) is not a proposal network checkpoint" in capsys.readouterr().err
    assert not store.exists()


@pytest.mark.parametrize("dataset", ["shapes", "ov_coco", "ov_lvis"])
def test_shipped_configs_load_and_cut_shards_as_extract_features_does(dataset):
    config = load_config(ProposalsConfig, REPO / "configs" / dataset / "proposals.yaml")
    extract = load_config(ExtractFeaturesConfig, REPO / "configs" / dataset / "extract_features.yaml")
    assert config.shard_size == extract.shard_size
    assert config.dataset.annotations == extract.dataset.annotations
    assert config.recall.split == extract.dataset.split


@pytest.mark.slow
def test_sigkill_mid_run_and_a_resume_in_worker_processes_write_the_same_stage_as_a_clean_run(world, clean_store):
    store = world.root / "killed"
    argv = world.argv(store, "--set=runtime.max_failure_rate=2.0")
    crashed = subprocess.run([sys.executable, "-m", "tests.beam_jobs.crash_after_commit", "--sigkill", "proposals",
                              *argv], cwd=REPO, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    reader = StoreReader(store)
    assert len(reader.shards("proposals")) == 1  # only the committed shard is visible
    survivor = reader.shards("proposals")[0]
    record = (store / "_commits" / "proposals" / f"{survivor:05d}.json").read_text()
    # The rerun goes through the DirectRunner's multi-processing mode: handler and DoFns travel to worker processes.
    summary = run(argv + ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert summary["shards_skipped"] == 1 and summary["shards_computed"] == 2
    assert (store / "_commits" / "proposals" / f"{survivor:05d}.json").read_text() == record
    resumed, clean = StoreReader(store), StoreReader(clean_store)
    for table in ("proposals", "failures"):
        got, expected = (r.read_table(table).sort_by([("image_id", "ascending")] + (
            [("rank", "ascending")] if table == "proposals" else [])) for r in (resumed, clean))
        assert got.drop_columns(["box", "score"] if table == "proposals" else []).equals(
            expected.drop_columns(["box", "score"] if table == "proposals" else []))
        if table == "proposals":
            for column in ("box", "score"):
                np.testing.assert_allclose(np.asarray(got.column(column).to_pylist()),
                                           np.asarray(expected.column(column).to_pylist()), rtol=1e-5, atol=1e-4)
    assert resumed.manifest.stages["proposals"].summary["recall"] == clean.manifest.stages["proposals"].summary[
        "recall"]
