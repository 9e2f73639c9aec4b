"""The pseudo-labels job on a TestPipeline over a small real store (tiny CLIP, real images, real Parquet)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.compute as pc
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from huggingface_hub import constants

from beam_jobs import pseudo_labels
from featurestore.arrow import embeddings_to_numpy
from featurestore.reader import StoreReader
from featurestore.stages import PSEUDO_LABELS
from pipelines.cosine_moments import mean_and_std
from pipelines.pseudo_label_pick import match_scores
from pipelines.pseudo_labels_config import HDOVD_K, HDOVD_MU, HDOVD_SIGMA
from tests.featurestore.store_factory import assert_says_how_to_proceed, downgrade_to_version_1, write_store
from tests.hub_cache import add_commit, new_repo_id
from tests.pseudo_label_store import write_given_captions, write_label_store
from tests.tiny_teachers import write_tiny_clipcap

NULL_EMBEDDING = (100, 2)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_label_store(tmp_path_factory.mktemp("labels"), null_embedding={NULL_EMBEDDING})


def given_captions(store) -> dict:
    captions = {}
    for shard, ids in enumerate(store.image_ids):
        for image_id in ids:
            captions[(image_id, 1)] = "a red star on a wall."
            # Shard 1's heart boxes are captioned wrongly, so their best cosine is below 1 (cosines spread).
            captions[(image_id, 2)] = "two hearts next to a wall" if shard == 0 else "a red star"
    captions[(100, 3)] = ""
    captions[(101, 3)] = NO_OBJECT_CAPTION
    return captions  # region 3 of the second shard's images has no caption at all


NO_OBJECT_CAPTION = "a photo of the background"  # every noun a stop word: no candidate, the box names no object


def job_argv(store, tmp_path, *settings, captions: dict | None = None) -> list[str]:
    """Given captions (default: given_captions); with those, 4 of the 12 pseudo boxes are failure rows, above the
    default failure rate unless a setting raises it, and 1 names no object."""
    path = write_given_captions(tmp_path / "captions.jsonl", captions or given_captions(store))
    argv = ["--store", str(store.root), "--set", "captioner.name=given", "--set", f"captioner.given.path={path}",
            "--set", "runtime.device=cpu", "--set", "runtime.min_batch_size=1"]
    for setting in settings:
        argv += ["--set", setting]
    return argv


def run_job(store, tmp_path, *settings, overwrite=False):
    argv = job_argv(store, tmp_path, "runtime.max_failure_rate=1.0", *settings)
    return pseudo_labels.run(argv + (["--overwrite"] if overwrite else []), test_pipeline=TestPipeline())


def proposal_keys(reader, shard):
    regions = reader.read_shard("regions", shard, ["image_id", "region_id", "source"]).to_pylist()
    return {(r["image_id"], r["region_id"]) for r in regions if r["source"] == "proposal"}


def test_given_captions_labels_failures_and_alignment(store, tmp_path):
    summary = run_job(store, tmp_path, overwrite=True)
    reader = StoreReader(store.root)
    assert summary["shards_computed"] == 2 and summary["labelled"] + summary["no_object"] + summary["failures"] == 12
    assert (summary["labelled"], summary["no_object"], summary["failures"]) == (7, 1, 4)
    for shard in reader.shards("regions"):
        labels = reader.read_shard("pseudo_labels", shard).to_pylist()
        failures = [f for f in reader.read_shard("failures", shard).to_pylist() if f["stage"] == "pseudo_labels"]
        keys = [(r["image_id"], r["region_id"]) for r in labels] + [(f["image_id"], f["region_id"]) for f in failures]
        assert sorted(keys) == sorted(proposal_keys(reader, shard))  # every pseudo box once, nothing else
    rows = {(r["image_id"], r["region_id"]): r for r in reader.read_table("pseudo_labels").to_pylist()}
    # The box whose caption names no object keeps its row: no label, cosine or text, and a score (weight) of 0.
    no_object = rows.pop((101, 3))
    assert no_object.pop("text_embedding") == [0.0] * len(store.word_embeddings["star"])
    assert no_object == {"image_id": 101, "region_id": 3, "caption": NO_OBJECT_CAPTION, "candidates": [],
                         "label": None, "cos": None, "score": 0.0}
    star = rows[(101, 1)]
    assert star["candidates"] == ["red star", "star", "wall"] and star["label"] == "star"
    assert star["cos"] == pytest.approx(1.0, abs=2e-3)  # the region is embedded as "star" itself
    assert rows[(101, 2)]["label"] == "heart" and rows[(200, 2)]["label"] in ("star", "red star")
    assert rows[(200, 2)]["cos"] < rows[(101, 2)]["cos"] - 1e-3  # a wrong caption matches worse
    cos = np.array([r["cos"] for r in rows.values()], dtype=np.float32)
    scores = np.array([r["score"] for r in rows.values()], dtype=np.float32)
    np.testing.assert_allclose(scores, match_scores(cos, HDOVD_MU, HDOVD_SIGMA, HDOVD_K), rtol=1e-5)
    kinds = {(f["image_id"], f["region_id"]): f["kind"] for f in reader.read_table("failures").to_pylist()
             if f["stage"] == "pseudo_labels"}
    assert kinds == {NULL_EMBEDDING: "missing_embedding", (100, 3): "empty_caption",
                     (200, 3): "empty_caption", (201, 3): "empty_caption"}
    vocab = [v for v in reader.read_table("vocab").to_pylist() if v["kind"] == "label"]
    assert {"heart", "star"} <= {v["name"] for v in vocab} <= {"heart", "star", "red star"} and {v["prompts"] for v in vocab} == {"single"}
    labelled = reader.read_table("pseudo_labels").filter(pc.is_valid(pc.field("label")))
    text = embeddings_to_numpy(labelled.column("text_embedding")).astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=2e-3)


def test_resume_skips_current_shards_and_config_change_recomputes(store, tmp_path):
    run_job(store, tmp_path, overwrite=True)
    assert run_job(store, tmp_path)["shards_computed"] == 0
    changed = run_job(store, tmp_path, "score.k=1.0")
    assert changed["shards_computed"] == 2
    assert max(r["score"] for r in StoreReader(store.root).read_table("pseudo_labels").to_pylist()) <= 1.0


def test_dataset_mu_sigma_from_global_combine(store, tmp_path):
    summary = run_job(store, tmp_path, "score.from_dataset=true", overwrite=True)
    table = StoreReader(store.root).read_table("pseudo_labels")
    table = table.filter(table.column("label").is_valid())  # μ, σ are moments of the picked cosines only
    cos = table.column("cos").to_numpy().astype(np.float64)
    [(mu, sigma)] = summary["score_mu_sigma"]
    assert len(cos) == 7 and summary["no_object"] == 1
    assert mu == pytest.approx(cos.mean(), abs=1e-5) and sigma == pytest.approx(cos.std(), abs=1e-5)
    np.testing.assert_allclose(table.column("score").to_numpy(), match_scores(cos, mu, sigma, HDOVD_K), rtol=1e-4)
    # A resumed run adds the kept shards' moments read back from the store: the very same μ, σ, bit for bit.
    kept = [SimpleNamespace(shard=shard) for shard in StoreReader(store.root).shards("pseudo_labels")]
    assert mean_and_std(pseudo_labels.committed_moments(StoreReader(store.root), kept)) == (mu, sigma)


def test_clipcap_on_stored_embeddings_accounts_for_every_box(store, tmp_path):
    checkpoint, gpt_dir = write_tiny_clipcap(tmp_path / "clipcap")
    argv = ["--store", str(store.root), "--overwrite", "--set", "captioner.name=clipcap",
            "--set", f"captioner.clipcap.checkpoint={checkpoint}", "--set", f"captioner.clipcap.gpt_dir={gpt_dir}",
            "--set", "captioner.clipcap.method=greedy", "--set", "captioner.clipcap.max_tokens=5",
            "--set", "runtime.device=cpu", "--set", "runtime.max_failure_rate=1.0"]
    summary = pseudo_labels.run(argv, test_pipeline=TestPipeline())
    assert summary["labelled"] + summary["no_object"] + summary["failures"] == 12
    assert summary["failures_by_kind"]["missing_embedding"] == 1
    record = StoreReader(store.root).manifest.stages[PSEUDO_LABELS]
    assert record.models["captioner"].name == "clipcap" and record.setting("captioner.name") == "clipcap"


def test_too_many_failure_rows_fail_the_job_after_everything_is_committed(store, tmp_path, capsys):
    argv = job_argv(store, tmp_path) + ["--overwrite", "--runner", "DirectRunner"]
    assert pseudo_labels.main(argv) == 3
    message = next(line for line in capsys.readouterr().err.splitlines() if " exceed " in line)
    assert "ERROR pseudo_labels: 4 failure rows for 12 pseudo boxes (33.3%) exceed runtime.max_failure_rate = 5.0%" \
        in message
    assert "'failures' table" in message and "(stage pseudo_labels)" in message
    reader = StoreReader(store.root)
    assert reader.manifest.stages[PSEUDO_LABELS].summary["labelled"] == 7 and reader.shards("pseudo_labels") == [0, 1]


def test_captions_that_name_no_object_do_not_count_toward_the_failure_rate(store, tmp_path):
    """1 failure row (the null embedding) of 12 boxes is under a gate of 10%; the 3 boxes captioned with no object
    are rows with no label, not failures, so they do not trip it (counted as failures they would: 4 of 12)."""
    captions = {key: "a red star" for key in given_captions(store)}
    for key in ((100, 3), (101, 3), (200, 3)):
        captions[key] = NO_OBJECT_CAPTION
    captions[(201, 3)] = "a big textured background"
    argv = job_argv(store, tmp_path, "runtime.max_failure_rate=0.1", captions=captions)
    summary = pseudo_labels.run(argv + ["--overwrite"], test_pipeline=TestPipeline())
    assert (summary["labelled"], summary["no_object"], summary["failures"]) == (7, 4, 1)
    assert summary["failures_by_kind"] == {"missing_embedding": 1}
    rows = StoreReader(store.root).read_table("pseudo_labels").to_pylist()
    assert sorted((r["image_id"], r["region_id"]) for r in rows if r["label"] is None) == [
        (100, 3), (101, 3), (200, 3), (201, 3)]
    assert all(r["score"] == 0.0 and r["cos"] is None for r in rows if r["label"] is None)
    assert all(r["score"] > 0.0 for r in rows if r["label"] is not None)


def test_missing_captioner_file_fails_before_any_write(store, tmp_path):
    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*"))
    with pytest.raises(FileNotFoundError, match="captioner.clipcap.checkpoint"):
        pseudo_labels.run(["--store", str(store.root), "--set", f"captioner.clipcap.checkpoint={tmp_path}/none.pt"],
                          test_pipeline=TestPipeline())
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*")) == before


def test_a_captioner_for_another_clip_width_fails_before_any_write(store, tmp_path, capsys):
    """The ShapesOV teacher ClipCap (64-d input) on this 32-d store: one line naming the key and the file that set
    it, exit code 2, nothing written (it failed deep inside Beam before, with a matmul shape error)."""
    repo = Path(__file__).resolve().parents[2]
    config = tmp_path / "labels.yaml"
    config.write_text(f"_base_: {repo / 'configs/shapes/pseudo_labels.yaml'}\ncaptioner:\n  clipcap:\n"
                      f"    checkpoint: {repo / 'assets/teachers/clipcap/clipcap_mlp.pt'}\n"
                      f"    gpt_dir: {repo / 'assets/teachers/clipcap/gpt2'}\n")
    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*"))
    assert pseudo_labels.main(["--store", str(store.root), "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert "config key 'captioner.clipcap.checkpoint'" in error and "takes 64-d CLIP embeddings" in error
    assert "holds 32-d ones" in error and f"(set in {config})" in error and "Traceback" not in error
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*")) == before


def test_store_without_regions_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a feature store"):
        pseudo_labels.run(["--store", str(tmp_path / "nowhere")], test_pipeline=TestPipeline())


def test_a_clipcap_by_hub_name_is_recorded_file_by_file(store, tmp_path):
    checkpoint, gpt_dir = write_tiny_clipcap(tmp_path / "clipcap")
    weights_repo, gpt_repo = new_repo_id("clipcap"), new_repo_id("gpt2")
    weights = add_commit(weights_repo, {"clipcap.pt": checkpoint}) / "clipcap.pt"
    gpt = add_commit(gpt_repo, gpt_dir)
    argv = ["--store", str(store.root), "--overwrite", "--set", "captioner.name=clipcap",
            "--set", f"captioner.clipcap.checkpoint=hf-hub:{weights_repo}/clipcap.pt",
            "--set", f"captioner.clipcap.gpt_dir={gpt_repo}", "--set", "captioner.clipcap.method=greedy",
            "--set", "captioner.clipcap.max_tokens=5", "--set", "runtime.device=cpu",
            "--set", "runtime.max_failure_rate=1.0"]
    summary = pseudo_labels.run(argv, test_pipeline=TestPipeline())
    assert summary["labelled"] + summary["no_object"] + summary["failures"] == 12
    captioner = StoreReader(store.root).manifest.stages[PSEUDO_LABELS].models["captioner"]
    files = {entry.path: entry for entry in captioner.files}
    assert files[str(weights)].sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert (files[str(weights)].repo_id, files[str(weights)].revision) == (weights_repo, weights.parent.name)
    assert {(entry.repo_id, entry.revision) for entry in captioner.files} == {
        (weights_repo, weights.parent.name), (gpt_repo, gpt.name)}
    assert str(gpt / "config.json") in files and captioner.name == "clipcap"


def test_a_captioner_missing_from_the_cache_fails_before_any_write(store):
    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*"))
    absent = new_repo_id("absent-clipcap")
    with pytest.raises(FileNotFoundError, match="captioner.clipcap.checkpoint") as missing:
        pseudo_labels.run(["--store", str(store.root), "--set",
                           f"captioner.clipcap.checkpoint=hf-hub:{absent}/clipcap.pt"], test_pipeline=TestPipeline())
    assert constants.HF_HUB_CACHE in str(missing.value)
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*")) == before


def test_a_version_1_store_is_refused_with_how_to_proceed(tmp_path, capsys):
    root = downgrade_to_version_1(write_store(tmp_path / "v1"))
    assert pseudo_labels.main(["--store", str(root), "--set", "captioner.name=given",
                               "--set", f"captioner.given.path={tmp_path / 'none.jsonl'}"]) == 2
    assert_says_how_to_proceed(capsys.readouterr().err)
