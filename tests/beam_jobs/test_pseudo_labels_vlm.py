"""The pseudo-labels job with the `vlm` labeler, as `make pseudo-labels SET="captioner.name=vlm ..."` runs it: a tiny
random LLaVA by hub name, the store's real images; every pseudo box accounted for (labelled, or an answer that
names no object), the model's commit and files in the manifest, and the template in the shard fingerprint."""
from __future__ import annotations

import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from beam_jobs import pseudo_labels
from featurestore.manifest import read_commits
from featurestore.reader import StoreReader
from featurestore.stages import PSEUDO_LABELS
from tests.hub_cache import add_commit, new_repo_id
from tests.pseudo_label_store import write_label_store
from tests.tiny_image_text_models import write_tiny_image_text_model


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_label_store(tmp_path_factory.mktemp("labels"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = new_repo_id("llava")
    return repo, add_commit(repo, write_tiny_image_text_model("llava", tmp_path_factory.mktemp("llava")))


def run_job(store, repo_id, *settings, overwrite=False) -> dict:
    argv = ["--store", str(store.root), "--set", "captioner.name=vlm", "--set", f"captioner.vlm.model={repo_id}",
            "--set", f"captioner.vlm.image_root={store.image_root}", "--set", "captioner.vlm.max_new_tokens=4",
            "--set", "runtime.device=cpu", "--set", "runtime.max_failure_rate=1.0", "--set", "runtime.min_batch_size=1"]
    for setting in settings:
        argv += ["--set", setting]
    return pseudo_labels.run(argv + (["--overwrite"] if overwrite else []), test_pipeline=TestPipeline())


def test_every_pseudo_box_is_answered_and_the_model_is_recorded_with_its_commit(store, repo):
    repo_id, snapshot = repo
    summary = run_job(store, repo_id, overwrite=True)
    assert summary["regions"] == 12 and summary["labelled"] + summary["no_object"] + summary["failures"] == 12
    assert set(summary["failures_by_kind"]) <= {"empty_caption"}
    # The random model's answers are strings of arbitrary tokens: with this seed some leave a noun and some none.
    assert summary["labelled"] > 0 and summary["no_object"] > 0
    record = StoreReader(store.root).manifest.stages[PSEUDO_LABELS]
    captioner = record.models["captioner"]
    assert captioner.name == "vlm" and {(f.repo_id, f.revision) for f in captioner.files} == {(repo_id, snapshot.name)}
    assert str(snapshot / "chat_template.jinja") in {f.path for f in captioner.files}
    assert record.setting("captioner.vlm.region_prompt") == "crop" and "short noun phrase" in \
        record.setting("captioner.vlm.crop_prompt")
    rows = StoreReader(store.root).read_table("pseudo_labels").to_pylist()
    assert all(row["caption"] for row in rows)
    # An answer that names no object is an outcome, as a caption of nothing is: its row has no label and score 0.
    no_object = [row for row in rows if row["label"] is None]
    assert len(no_object) == summary["no_object"]
    assert all(row["candidates"] == [] and row["cos"] is None and row["score"] == 0.0 for row in no_object)
    assert all(row["candidates"] and row["score"] > 0 for row in rows if row["label"] is not None)


def test_the_same_settings_resume_and_a_new_template_recomputes(store, repo):
    repo_id, _ = repo
    run_job(store, repo_id, "captioner.vlm.region_prompt=box", overwrite=True)
    before = {c.shard: c.fingerprint for c in read_commits(store.root, PSEUDO_LABELS)}
    assert run_job(store, repo_id, "captioner.vlm.region_prompt=box")["shards_computed"] == 0
    changed = run_job(store, repo_id, "captioner.vlm.region_prompt=box",
                      "captioner.vlm.box_prompt=Name the object in the box {box}.")
    assert changed["shards_computed"] == 2
    after = {c.shard: c.fingerprint for c in read_commits(store.root, PSEUDO_LABELS)}
    assert all(after[shard] != before[shard] for shard in before)
