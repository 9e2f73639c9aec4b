"""manifest.json as typed records: written and read by the store, compatible with older and newer JSON."""
import json

import pytest

from featurestore.manifest import Manifest, ModelFile, ModelRecord, StageRecord, read_manifest
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES, PSEUDO_LABELS
from featurestore.writer import ShardWriter
from schemas.tables import SCHEMA_VERSION
from tests.featurestore.store_factory import DIM, shard_tables, write_store


def test_stage_records_round_trip_through_the_json_on_disk(tmp_path):
    root = write_store(tmp_path / "store", shards=2)
    manifest = read_manifest(root)
    extract = manifest.stages[EXTRACT_FEATURES]
    assert extract.models["clip"] == ModelRecord(sha256="0" * 64, name="local-dir:tiny", path="tiny", prompts="single")
    assert extract.embedding_dim == DIM and extract.config_hash == "hash-extract"
    assert extract.shards == {"00000": "fp-0", "00001": "fp-1"} and extract.summary == {"images": 6}
    assert extract.started_at <= extract.finished_at
    on_disk = json.loads((root / "manifest.json").read_text())
    # Absent values are left out, not written as null: the sections read as they always did.
    assert on_disk["stages"][EXTRACT_FEATURES]["models"]["clip"] == {"name": "local-dir:tiny", "path": "tiny",
                                                                      "prompts": "single", "sha256": "0" * 64}
    assert Manifest.from_json(on_disk, "here") == manifest


def test_newer_fields_are_skipped_and_settings_read_by_dotted_key():
    data = {"schema_version": SCHEMA_VERSION, "future": True, "stages": {EXTRACT_FEATURES: {
        "config": {"dataset": {"image_root": "/images"}}, "config_hash": "h", "new_field": 3,
        "models": {"clip": {"sha256": "s", "name": "local-dir:m", "quantised": True}}}}}
    record = Manifest.from_json(data, "here").stages[EXTRACT_FEATURES]
    assert record.models["clip"] == ModelRecord(sha256="s", name="local-dir:m")
    assert record.setting("dataset.image_root") == "/images"
    assert record.setting("dataset.missing") is None and record.setting("config_hash") is None


def test_model_records_of_hub_models_round_trip_with_their_files():
    snapshot = "/cache/hub/models--org--clipcap/snapshots/" + "c" * 40
    captioner = ModelRecord(sha256="d", name="clipcap", files=(
        ModelFile(f"{snapshot}/clipcap.pt", "1" * 64, "org/clipcap", "c" * 40), ModelFile("/local/gpt2/config.json",
                                                                                           "2" * 64)))
    clip = ModelRecord(sha256="s", name="hf-hub:org/clip", path=f"{snapshot}/open_clip_model.safetensors",
                       repo_id="org/clip", revision="c" * 40, prompts="single")
    on_disk = json.loads(json.dumps({"captioner": captioner.to_json(), "clip": clip.to_json()}))
    assert on_disk["captioner"]["files"][1] == {"path": "/local/gpt2/config.json", "sha256": "2" * 64}
    assert ModelRecord.from_json(on_disk["captioner"]) == captioner and ModelRecord.from_json(on_disk["clip"]) == clip


def test_store_clip_of_an_older_store_comes_from_its_recorded_config():
    """Stores written before the clip record carried its prompts recorded them only in the config."""
    older = StageRecord(config={"model": {"clip": "ViT-T", "checkpoint": "/w.pt", "model_config_dir": "/cfg"},
                                "vocab": {"prompts": "imagenet80"}},
                        models={"clip": ModelRecord(sha256="s", name="ViT-T", path="/w.pt")})
    clip = Manifest({EXTRACT_FEATURES: older}).store_clip("store S")
    assert (clip.name, clip.checkpoint, clip.model_config_dir, clip.prompts) == ("ViT-T", "/w.pt", "/cfg",
                                                                                 "imagenet80")
    with pytest.raises(KeyError, match="store S: the manifest records no extract_features CLIP"):
        Manifest({PSEUDO_LABELS: StageRecord()}).store_clip("store S")


def test_reopening_a_stage_keeps_what_the_last_run_finished_with(tmp_path):
    root = write_store(tmp_path / "store", shards=1, with_pseudo_labels=False)
    ShardWriter(root, EXTRACT_FEATURES, DIM).open_stage({"crop": {"mode": "tight"}}, "hash-2")
    record = read_manifest(root).stages[EXTRACT_FEATURES]
    assert record.config_hash == "hash-2" and record.models == {} and record.shards == {"00000": "fp-0"}


def test_forget_shards_and_shard_stats_are_store_methods(tmp_path):
    root = write_store(tmp_path / "store", shards=3, with_pseudo_labels=False)
    assert StoreReader(root).shard_stats(EXTRACT_FEATURES, 2) == {"images": 3}
    writer = ShardWriter(root, EXTRACT_FEATURES, DIM)
    assert writer.forget_shards(keep={0, 2}) == [1]
    reader = StoreReader(root)
    assert reader.shards("regions") == [0, 2]
    with pytest.raises(KeyError, match="shard 1 of stage extract_features has no committed stats"):
        reader.shard_stats(EXTRACT_FEATURES, 1)
    writer.commit(1, shard_tables(1), fingerprint="fp-1", stats={"images": 1})
    assert StoreReader(root).shard_stats(EXTRACT_FEATURES, 1) == {"images": 1}
    assert writer.forget_shards(keep=set()) == [0, 1, 2] and StoreReader(root).shards("regions") == []
