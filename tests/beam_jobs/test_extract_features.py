"""The extract-features job on real Beam (TestPipeline, multi-processing, a killed subprocess), a tiny
random-weight open_clip model and real files; checked against a direct computation of the same crops."""
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from beam_jobs.extract_features import main, run
from beam_jobs.sharded_stage import FailureRateExceeded
from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from pipelines.extract_config import ExtractFeaturesConfig
from vlm.clip import ModelLoadError, load_clip, resolve_clip
from schemas.config import load_config
from tests.beam_jobs.crash_after_commit import CRASH_EXIT_CODE
from tests.beam_jobs.sample import DANGLING_IMAGE_ID, NOVEL_IDS, UNKNOWN_PROPOSAL_IMAGE_ID, make_sample
from tests.featurestore.store_factory import assert_says_how_to_proceed, downgrade_to_version_1, write_store
from tests.tiny_clip import save_local_dir

REPO = Path(__file__).resolve().parents[2]
BAD_KINDS = {"missing": 1, "truncated": 1, "not_an_image": 1, "unknown_image_id": 2, "nan_box": 1,
             "negative_box": 1, "out_of_image": 1, "unknown_category": 1, "degenerate_box": 1}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    model_dir = save_local_dir(root / "clip", seed=1)
    sample = make_sample(root / "sample", images=6, bad_inputs=True)
    return root, model_dir, sample


@pytest.fixture(scope="module")
def clean_store(world):
    """One run over the sample with every bad input; the default failure rate makes it fail at the end."""
    root, model_dir, sample = world
    store = root / "clean"
    argv = [f"--set={o}" for o in sample.overrides(model_dir)] + ["--store", str(store)]
    with pytest.raises(FailureRateExceeded, match="'failures' table") as error:
        run(argv, test_pipeline=BeamTestPipeline(argv=[]))
    return store, str(error.value)


# What the model computes: equal across runs only to float tolerance (batches differ, so do reduction orders).
MODEL_OUTPUTS = ["embedding", "embedding_norm"]


def assert_same_rows(got, expected) -> None:
    """Two images or regions tables: every column but the model's outputs equal, those equal to float16 storage
    (embeddings, atol 2e-3: a few float16 steps near 0.1-0.5) and float32 batch effects (norms, rtol 1e-4)."""
    assert got.drop_columns(MODEL_OUTPUTS).equals(expected.drop_columns(MODEL_OUTPUTS))
    np.testing.assert_allclose(embeddings_to_numpy(got.column("embedding")).astype(np.float32),
                               embeddings_to_numpy(expected.column("embedding")).astype(np.float32), atol=2e-3)
    np.testing.assert_allclose(got.column("embedding_norm").to_numpy(), expected.column("embedding_norm").to_numpy(),
                               rtol=1e-4)


def _regions(store: Path):
    return StoreReader(store).read_table("regions").sort_by([("image_id", "ascending"), ("region_id", "ascending")])


def _direct_embeddings(model_dir: Path, image_root: Path, file_names: dict, rows: list) -> np.ndarray:
    """What the job should store, computed without Beam: PIL crop, open_clip's own transform, one forward; raw
    `encode_image` output, not normalised."""
    clip = load_clip(resolve_clip(f"local-dir:{model_dir}", None, None))
    transform = image_transform_v2(PreprocessCfg(**clip.preprocess_cfg), is_train=False)
    crops = []
    for row in rows:
        with Image.open(image_root / file_names[row["image_id"]]) as image:
            crops.append(transform(image.convert("RGB").crop(tuple(row["crop_box"]))))
    with torch.no_grad():
        return clip.model.encode_image(torch.stack(crops)).numpy()


def test_rows_match_a_direct_computation_of_the_same_crops(world, clean_store):
    root, model_dir, sample = world
    store, _ = clean_store
    reader = StoreReader(store)
    images = reader.read_table("images")
    file_names = dict(zip(images.column("image_id").to_pylist(), images.column("file_name").to_pylist()))
    assert sorted(file_names) == [1, 2, 3, 4, 5, 6]
    regions = _regions(store)
    rows = regions.drop_columns(MODEL_OUTPUTS).to_pylist()
    stored = embeddings_to_numpy(regions.column("embedding")).astype(np.float32)
    raw = _direct_embeddings(model_dir, sample.image_root, file_names, rows)
    norms = np.linalg.norm(raw, axis=1)
    assert np.abs(stored - raw / norms[:, None]).max() < 0.02  # float16 storage + one grey level of resize rounding
    # The raw length, not 1: unit embedding x embedding_norm gives encode_image's output back.
    np.testing.assert_allclose(regions.column("embedding_norm").to_numpy(), norms, rtol=0.02)
    assert np.abs(norms - 1).max() > 0.05
    whole = {r["image_id"]: i for i, r in enumerate(rows) if r["source"] == "image"}
    image_vectors = embeddings_to_numpy(images.column("embedding"))
    image_norms = images.column("embedding_norm").to_numpy()
    stored_norms = regions.column("embedding_norm").to_numpy()
    for image_id, vector, norm in zip(images.column("image_id").to_pylist(), image_vectors, image_norms):
        np.testing.assert_array_equal(vector, stored[whole[image_id]].astype(np.float16))
        assert norm == stored_norms[whole[image_id]]
    for row in rows:
        left, top, right, bottom = row["crop_box"]
        x0, y0, x1, y1 = row["box"]
        assert left <= x0 + 1e-3 and top <= y0 + 1e-3 and right >= x1 - 1e-3 and bottom >= y1 - 1e-3
    assert {r["crop_mode"] for r in rows if r["source"] != "image"} == {"square"}
    assert Counter(r["source"] for r in rows)["image"] == 6
    samples = list(reader.wds_samples())
    assert sorted(int(s["__key__"]) for s in samples) == [1, 2, 3, 4, 5, 6]


def test_every_bad_input_is_one_failure_row_and_the_rate_fails_the_job(clean_store):
    store, message = clean_store
    failures = StoreReader(store).read_table("failures").to_pylist()
    assert Counter(f["kind"] for f in failures) == BAD_KINDS
    by_kind = {f["kind"]: f for f in failures}
    assert by_kind["missing"]["file_name"] == "missing.png" and "missing.png" in by_kind["missing"]["message"]
    # An annotation and proposals naming image ids `images` does not list: one row each, the rest processed.
    unknown = {f["image_id"]: f["message"] for f in failures if f["kind"] == "unknown_image_id"}
    assert sorted(unknown) == sorted([DANGLING_IMAGE_ID, UNKNOWN_PROPOSAL_IMAGE_ID])
    assert "annotation(s) (id 9003)" in unknown[DANGLING_IMAGE_ID]
    assert "10 failure rows for 9 input images" in message and "max_failure_rate" in message


def test_strict_setting_keeps_novel_boxes_out_of_the_store(clean_store):
    store, _ = clean_store
    reader = StoreReader(store)
    categories = {c for c in reader.read_table("regions").column("category_id").to_pylist() if c is not None}
    assert categories and not categories & NOVEL_IDS
    for sample in reader.wds_samples():
        assert not {r["category_id"] for r in sample["json"]["regions"]} & NOVEL_IDS
    vocab = reader.read_table("vocab").to_pylist()
    assert [(v["name"], v["split"]) for v in vocab] == [("circle", "base"), ("square", "base"), ("star", "novel"),
                                                       ("heart", "novel")]


@pytest.mark.parametrize("name", ["shapes/extract_features", "ov_coco/extract_features", "ov_lvis/extract_features"])
def test_shipped_configs_load(name):
    config = load_config(ExtractFeaturesConfig, REPO / "configs" / f"{name}.yaml")
    assert config.regions.top_k == 5 and config.dataset.strict


def test_missing_model_is_an_error_naming_the_key_before_any_work(world):
    root, model_dir, sample = world
    store = root / "never"
    argv = [f"--set={o}" for o in sample.overrides(model_dir)] + ["--store", str(store),
                                                                   f"--set=model.clip=local-dir:{root / 'gone'}"]
    with pytest.raises(ModelLoadError, match="model.clip"):
        run(argv)
    assert not store.exists()


def _tables(store: Path) -> dict:
    reader = StoreReader(store)
    return {name: reader.read_table(name).sort_by([("image_id", "ascending")] + (
        [("region_id", "ascending")] if name == "regions" else [])) for name in ("images", "regions")}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_store(world, clean_store):
    root, model_dir, sample = world
    store = root / "resumed"
    argv = [f"--set={o}" for o in sample.overrides(model_dir)] + ["--store", str(store),
                                                                   "--set=runtime.max_failure_rate=2.0"]
    crashed = subprocess.run([sys.executable, "-m", "tests.beam_jobs.crash_after_commit", "extract_features", *argv],
                             cwd=REPO, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
    reader = StoreReader(store)
    assert len(reader.shards("regions")) == 1  # only the committed shard is visible; the rest never started
    survivor = reader.shards("regions")[0]
    record = (store / "_commits" / "extract_features" / f"{survivor:05d}.json").read_text()
    # The rerun goes through Beam's portable runner path (embedded job server, loopback workers).
    summary = run(argv + ["--runner", "PortableRunner", "--job_endpoint", "embed", "--environment_type", "LOOPBACK"])
    assert summary["shards_skipped"] == 1 and summary["shards_computed"] == 2
    assert (store / "_commits" / "extract_features" / f"{survivor:05d}.json").read_text() == record
    resumed, clean = _tables(store), _tables(clean_store[0])
    for name in resumed:
        assert_same_rows(resumed[name], clean[name])
    assert run(argv)["shards_computed"] == 0  # everything current: nothing recomputed
    assert run(argv + ["--overwrite"])["shards_computed"] == 3


@pytest.mark.slow
def test_multi_processing_mode_and_an_image_left_without_regions(world, clean_store):
    root, model_dir, sample = world
    records = json.loads(sample.annotations.read_text())
    records["annotations"] = [a for a in records["annotations"] if a["image_id"] != 4]
    annotations = root / "no_boxes_for_4.json"
    annotations.write_text(json.dumps(records))
    proposals = [p for p in json.loads(sample.proposals.read_text()) if p["image_id"] != 4]
    (root / "proposals_without_4.json").write_text(json.dumps(proposals))
    store = root / "multi"
    argv = [f"--set={o}" for o in sample.overrides(model_dir)] + [
        "--store", str(store), f"--set=dataset.annotations={annotations}",
        f"--set=dataset.proposals={root / 'proposals_without_4.json'}", "--set=regions.include_image=false",
        "--set=runtime.max_failure_rate=2.0", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    summary = run(argv)
    assert summary["failures_by_kind"] == {**BAD_KINDS, "no_region": 1}
    multi = _tables(store)["regions"]
    assert 4 not in multi.column("image_id").to_pylist()
    assert "image" not in multi.column("source").to_pylist()
    clean = _tables(clean_store[0])["regions"]
    clean_rows = {(r["image_id"], r["region_id"]): r for r in clean.drop_columns(MODEL_OUTPUTS).to_pylist()}
    clean_vectors = embeddings_to_numpy(clean.column("embedding"))
    index = {key: i for i, key in enumerate(clean_rows)}
    multi_vectors = embeddings_to_numpy(multi.column("embedding"))
    for i, row in enumerate(multi.drop_columns(MODEL_OUTPUTS).to_pylist()):
        key = (row["image_id"], row["region_id"])
        assert row == clean_rows[key]
        np.testing.assert_allclose(multi_vectors[i].astype(np.float32), clean_vectors[index[key]], atol=2e-3)


def test_the_direct_runner_runs_pending_shards_in_waves(world, clean_store, caplog):
    root, model_dir, sample = world
    store = root / "waves"
    argv = [f"--set={o}" for o in sample.overrides(model_dir)] + [
        "--store", str(store), "--set=runtime.max_failure_rate=2.0", "--set=runtime.shards_per_run=2"]
    with caplog.at_level(logging.INFO, logger="beam_jobs.sharded_stage"):
        summary = run(argv)  # no --runner: Beam's default, the DirectRunner
    waves = [r.getMessage() for r in caplog.records if "pipeline" in r.getMessage()]
    assert waves == ["extract_features: pipeline 1 of 2: shards [0, 1]", "extract_features: pipeline 2 of 2: shards [2]"]
    assert summary["shards_computed"] == 3
    waved, clean = _tables(store), _tables(clean_store[0])
    for name in waved:
        assert_same_rows(waved[name], clean[name])


def test_a_version_1_store_is_refused_before_anything_in_it_changes(world, tmp_path, capsys):
    root, model_dir, sample = world
    store = downgrade_to_version_1(write_store(tmp_path / "v1"))
    records = sorted(p.relative_to(store) for p in (store / "_commits").rglob("*.json"))
    argv = [f"--set={o}" for o in sample.overrides(model_dir)] + ["--store", str(store), "--overwrite"]
    assert main(argv) == 2
    assert_says_how_to_proceed(capsys.readouterr().err)
    assert sorted(p.relative_to(store) for p in (store / "_commits").rglob("*.json")) == records


def test_dtype_auto_is_settled_once_by_the_driver_and_the_job_runs_as_if_given(world, clean_store):
    """model.dtype auto on a new store: the driver's probe (both rates, the faster kept) is in the manifest's summary;
    the workers run the picked dtype as given, so the shards' fingerprints are those of an explicit run with that
    dtype (which then computes nothing), and the rows match the fp32 run's to bf16's precision."""
    root, model_dir, sample = world
    store = root / "auto"
    argv = [f"--set={o}" for o in sample.overrides(model_dir)] + [
        "--store", str(store), "--set=runtime.max_failure_rate=2.0", "--set=model.dtype=auto"]
    summary = run(argv, test_pipeline=BeamTestPipeline(argv=[]))
    probed = summary["dtype"]
    assert probed["how"] == "probe" and set(probed["probe_crops_per_second"]) == {"fp32", "bf16"}
    assert probed["dtype"] == max(probed["probe_crops_per_second"], key=probed["probe_crops_per_second"].get)
    assert StoreReader(store).manifest.stages["extract_features"].summary["dtype"] == probed
    assert summary["model_dtype"] == [{"dtype": probed["dtype"], "how": "given"}]
    again = run(argv[:-1] + [f"--set=model.dtype={probed['dtype']}"], test_pipeline=BeamTestPipeline(argv=[]))
    assert again["shards_computed"] == 0 and again["dtype"] == {"dtype": probed["dtype"], "how": "given"}
    got, expected = _regions(store), _regions(clean_store[0])
    assert got.num_rows == expected.num_rows
    cosines = np.sum(embeddings_to_numpy(got.column("embedding")).astype(np.float32)
                     * embeddings_to_numpy(expected.column("embedding")).astype(np.float32), axis=1)
    assert cosines.min() > 0.99


@pytest.mark.parametrize("written_in", ["fp32", "bf16"])
def test_dtype_auto_keeps_the_dtype_of_the_store_it_resumes(world, tmp_path, written_in):
    """A store whose shards ran in one dtype, resumed with model.dtype auto (on another machine, say): nothing is
    recomputed and nothing is probed, whichever dtype a probe here would pick; --overwrite probes afresh."""
    root, model_dir, sample = world
    base = [f"--set={o}" for o in sample.overrides(model_dir)] + [
        "--store", str(tmp_path / "store"), "--set=runtime.max_failure_rate=2.0"]
    first = run(base + [f"--set=model.dtype={written_in}"], test_pipeline=BeamTestPipeline(argv=[]))
    resumed = run(base + ["--set=model.dtype=auto"], test_pipeline=BeamTestPipeline(argv=[]))
    assert first["shards_computed"] == first["shards"] and resumed["shards_computed"] == 0
    assert resumed["dtype"] == {"dtype": written_in, "how": "kept from the store"}
    afresh = run(base + ["--set=model.dtype=auto", "--overwrite"], test_pipeline=BeamTestPipeline(argv=[]))
    assert afresh["dtype"]["how"] == "probe" and afresh["shards_computed"] == afresh["shards"]


def test_dtype_auto_reads_past_a_damaged_shard_and_the_driver_recomputes_it(world, tmp_path):
    """A flipped byte in the first shard's stats: auto keeps the dtype the next shard says, and the damaged shard is
    recomputed in it (in the dtype of the rest of the store)."""
    root, model_dir, sample = world
    store = tmp_path / "store"
    base = [f"--set={o}" for o in sample.overrides(model_dir)] + [
        "--store", str(store), "--set=runtime.max_failure_rate=2.0"]
    run(base + ["--set=model.dtype=bf16"], test_pipeline=BeamTestPipeline(argv=[]))
    reader = StoreReader(store)
    first = min((c for c in reader.commits if c.stage == "extract_features" and "stats" in c.files),
                key=lambda c: c.shard)
    stats_file = store / first.files["stats"].path
    damaged = bytearray(stats_file.read_bytes())
    damaged[len(damaged) // 2] ^= 0x20
    stats_file.write_bytes(bytes(damaged))
    resumed = run(base + ["--set=model.dtype=auto"], test_pipeline=BeamTestPipeline(argv=[]))
    assert resumed["dtype"] == {"dtype": "bf16", "how": "kept from the store"}
    assert resumed["shards_computed"] == 1
    assert StoreReader(store).shard_stats("extract_features", first.shard)["model_dtype"]["dtype"] == "bf16"
